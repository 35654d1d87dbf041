-- Each request as it arrived: the same tables, columns and meaning as on
-- SQLite (see the README and migrations/sqlite/0009_raw_requests.sql).
-- Times are BIGINT milliseconds since 1970-01-01T00:00:00Z.
CREATE TABLE cmc_raw_requests (
    id                 BIGSERIAL PRIMARY KEY,
    received_at        BIGINT  NOT NULL,
    client             TEXT,
    content_type       TEXT    NOT NULL,
    user_agent         TEXT,
    content_length     TEXT,
    transfer_encoding  TEXT,
    outcome            TEXT    NOT NULL CHECK (outcome IN ('stored', 'refused')),
    reason             TEXT,
    body_sha256        TEXT    NOT NULL UNIQUE,
    size               BIGINT  NOT NULL,
    body               BYTEA,
    mail_id            BIGINT,
    repeats            BIGINT  NOT NULL DEFAULT 0
);

CREATE INDEX cmc_raw_requests_received_at ON cmc_raw_requests (received_at);

CREATE TABLE cmc_raw_request_parts (
    request_id         BIGINT  NOT NULL REFERENCES cmc_raw_requests (id) ON DELETE CASCADE,
    start              BIGINT  NOT NULL,
    length             BIGINT  NOT NULL,
    data               BYTEA,
    attachment         BIGINT,
    event_key          TEXT,
    PRIMARY KEY (request_id, start)
);

ALTER TABLE cmc_events ADD COLUMN raw_request_id BIGINT;
ALTER TABLE cmc_mails ADD COLUMN raw_request_id BIGINT;
