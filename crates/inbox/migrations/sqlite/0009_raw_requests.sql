-- Each request as it arrived: the body and the headers that matter, kept
-- for a retention of their own (7 days by default) so that a parser fix
-- can be applied to what was received (`reparse`). A row of cmc_events or
-- cmc_mails names the request it arrived in (raw_request_id); the request
-- may have been pruned since, and the row reads the same.
--
-- The kept body is the body as it arrived with two changes: the value of
-- every `api_key` field replaced by `[redacted]` (the rest byte for byte,
-- so that it still parses), and each attachment's bytes not kept twice: a
-- part of the body that is an attachment stored in cmc_mail_attachments
-- is a reference to it (see cmc_raw_request_parts), and so is a text field
-- or an event's subject stored apart (cmc_mail_attachments at -1, -2, -3,
-- cmc_event_texts) that the body holds byte for byte. `body_sha256` is the
-- SHA-256 of the kept body whole: the same body arriving again is stored
-- once (its `repeats` counted), and reading it back is checked against it.
CREATE TABLE cmc_raw_requests (
    id                 INTEGER PRIMARY KEY,
    received_at        INTEGER NOT NULL,               -- milliseconds since 1970 (UTC)
    client             TEXT,                           -- the address it came from
    content_type       TEXT    NOT NULL,
    user_agent         TEXT,
    content_length     TEXT,                           -- the header, as sent
    transfer_encoding  TEXT,                           -- the header, as sent
    outcome            TEXT    NOT NULL CHECK (outcome IN ('stored', 'refused')),
    reason             TEXT,                           -- why it was refused (400)
    body_sha256        TEXT    NOT NULL UNIQUE,        -- 64 hex digits, of the kept body
    size               INTEGER NOT NULL,               -- the kept body's length
    body               BLOB,                           -- the kept body, when it is one part of at most 1 MiB
    mail_id            INTEGER,                        -- the mail whose attachments the parts refer to
    repeats            INTEGER NOT NULL DEFAULT 0      -- times the same body arrived again
);

-- Retention deletes by age.
CREATE INDEX cmc_raw_requests_received_at ON cmc_raw_requests (received_at);

-- A kept body that is not whole in cmc_raw_requests.body: its parts in
-- order of `start`, each `length` bytes: bytes (`data`, at most 1 MiB), or
-- (`data` NULL) the bytes at position `attachment` of the request's mail
-- in cmc_mail_attachments, or the subject of the event keyed `event_key`
-- in cmc_event_texts.
CREATE TABLE cmc_raw_request_parts (
    request_id         INTEGER NOT NULL REFERENCES cmc_raw_requests (id) ON DELETE CASCADE,
    start              INTEGER NOT NULL,               -- where this part starts in the kept body
    length             INTEGER NOT NULL,
    data               BLOB,
    attachment         INTEGER,
    event_key          TEXT,
    PRIMARY KEY (request_id, start)
);

ALTER TABLE cmc_events ADD COLUMN raw_request_id INTEGER;
ALTER TABLE cmc_mails ADD COLUMN raw_request_id INTEGER;
