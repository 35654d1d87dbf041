-- The inbox of cmc-webhook: one row per event and per inbound mail, stored
-- before the webhook is answered 200, then handed to the application.
--
-- Times are integers: milliseconds since 1970-01-01T00:00:00Z (UTC).
-- A row's life: pending -> running -> done, or back to pending for a retry,
-- or dead after its last attempt. Replay sets it pending again.

CREATE TABLE cmc_events (
    id                 INTEGER PRIMARY KEY,            -- order of arrival
    idempotency_key    TEXT    NOT NULL UNIQUE,        -- 32 hex digits, Event::idempotency_key
    event_type         TEXT    NOT NULL,               -- deliveries, bounces, blocks, or CMC's new name
    message_id         TEXT,                           -- the sent mail's Message-ID
    recipient          TEXT,                           -- `to` (deliveries, bounces) or `email` (blocks)
    status             TEXT,                           -- delivery status, or bounce code
    created            TEXT,                           -- CMC's civil time, as sent: 2023-01-25 14:03:09
    server_composition TEXT    NOT NULL,
    client             TEXT,                           -- the address the webhook came from
    received_at        INTEGER NOT NULL,
    repeats            INTEGER NOT NULL DEFAULT 0,     -- times the same event arrived again
    event              TEXT    NOT NULL,               -- the event as cmc-webhook's JSON
    state              TEXT    NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts           INTEGER NOT NULL DEFAULT 0,     -- handler runs started
    run_at             INTEGER NOT NULL,               -- due from (pending rows)
    locked_by          TEXT,                           -- the worker holding it (running rows)
    locked_until       INTEGER,                        -- its lease's end (running rows)
    last_error         TEXT,
    done_at            INTEGER                         -- when it was done or dead
);

-- Claims scan the rows still to do, in order of arrival.
CREATE INDEX cmc_events_active ON cmc_events (id) WHERE state IN ('pending', 'running');
CREATE INDEX cmc_events_message_id ON cmc_events (message_id);
-- Prune finds the done rows by age; the dead rows are listed in order.
CREATE INDEX cmc_events_done ON cmc_events (done_at) WHERE state = 'done';
CREATE INDEX cmc_events_dead ON cmc_events (id) WHERE state = 'dead';

CREATE TABLE cmc_mails (
    id                 INTEGER PRIMARY KEY,
    idempotency_key    TEXT    NOT NULL UNIQUE,        -- 32 hex digits, InboundMail::idempotency_key
    message_id         TEXT,                           -- the Message-ID header
    envelope_from      TEXT    NOT NULL,
    envelope_to        TEXT    NOT NULL,
    subject            TEXT    NOT NULL,
    filter             TEXT    NOT NULL,
    server_composition TEXT    NOT NULL,
    client             TEXT,
    received_at        INTEGER NOT NULL,
    repeats            INTEGER NOT NULL DEFAULT 0,
    attachments        INTEGER NOT NULL,               -- how many rows cmc_mail_attachments holds
    size               INTEGER NOT NULL,               -- their bytes in all
    mail               TEXT    NOT NULL,               -- the mail as cmc-webhook's JSON, attachment data empty
    state              TEXT    NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    run_at             INTEGER NOT NULL,
    locked_by          TEXT,
    locked_until       INTEGER,
    last_error         TEXT,
    done_at            INTEGER
);

CREATE INDEX cmc_mails_active ON cmc_mails (id) WHERE state IN ('pending', 'running');
CREATE INDEX cmc_mails_message_id ON cmc_mails (message_id);
CREATE INDEX cmc_mails_done ON cmc_mails (done_at) WHERE state = 'done';
CREATE INDEX cmc_mails_dead ON cmc_mails (id) WHERE state = 'dead';

-- The bytes of each attachment, in the order of the mail's `attachments`.
CREATE TABLE cmc_mail_attachments (
    mail_id            INTEGER NOT NULL REFERENCES cmc_mails (id) ON DELETE CASCADE,
    position           INTEGER NOT NULL,               -- 0, 1, ...
    data               BLOB    NOT NULL,
    PRIMARY KEY (mail_id, position)
);
