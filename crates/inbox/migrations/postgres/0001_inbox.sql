-- The inbox of cmc-webhook on PostgreSQL: the same tables, columns and
-- meaning as on SQLite (see the README). Times are BIGINT milliseconds
-- since 1970-01-01T00:00:00Z.

CREATE TABLE cmc_events (
    id                 BIGSERIAL PRIMARY KEY,
    idempotency_key    TEXT    NOT NULL UNIQUE,
    event_type         TEXT    NOT NULL,
    message_id         TEXT,
    recipient          TEXT,
    status             TEXT,
    created            TEXT,
    server_composition TEXT    NOT NULL,
    client             TEXT,
    received_at        BIGINT  NOT NULL,
    repeats            BIGINT  NOT NULL DEFAULT 0,
    event              TEXT    NOT NULL,
    state              TEXT    NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts           BIGINT  NOT NULL DEFAULT 0,
    run_at             BIGINT  NOT NULL,
    locked_by          TEXT,
    locked_until       BIGINT,
    last_error         TEXT,
    done_at            BIGINT
);

CREATE INDEX cmc_events_active ON cmc_events (id) WHERE state IN ('pending', 'running');
CREATE INDEX cmc_events_message_id ON cmc_events (message_id);
CREATE INDEX cmc_events_done ON cmc_events (done_at) WHERE state = 'done';
CREATE INDEX cmc_events_dead ON cmc_events (id) WHERE state = 'dead';
CREATE INDEX cmc_events_leases ON cmc_events (locked_until) WHERE state = 'running';

CREATE TABLE cmc_mails (
    id                 BIGSERIAL PRIMARY KEY,
    idempotency_key    TEXT    NOT NULL UNIQUE,
    message_id         TEXT,
    envelope_from      TEXT    NOT NULL,
    envelope_to        TEXT    NOT NULL,
    subject            TEXT    NOT NULL,
    filter             TEXT    NOT NULL,
    server_composition TEXT    NOT NULL,
    client             TEXT,
    received_at        BIGINT  NOT NULL,
    repeats            BIGINT  NOT NULL DEFAULT 0,
    attachments        BIGINT  NOT NULL,
    size               BIGINT  NOT NULL,
    mail               TEXT    NOT NULL,
    state              TEXT    NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts           BIGINT  NOT NULL DEFAULT 0,
    run_at             BIGINT  NOT NULL,
    locked_by          TEXT,
    locked_until       BIGINT,
    last_error         TEXT,
    done_at            BIGINT
);

CREATE INDEX cmc_mails_active ON cmc_mails (id) WHERE state IN ('pending', 'running');
CREATE INDEX cmc_mails_message_id ON cmc_mails (message_id);
CREATE INDEX cmc_mails_done ON cmc_mails (done_at) WHERE state = 'done';
CREATE INDEX cmc_mails_dead ON cmc_mails (id) WHERE state = 'dead';
CREATE INDEX cmc_mails_leases ON cmc_mails (locked_until) WHERE state = 'running';

CREATE TABLE cmc_mail_attachments (
    mail_id            BIGINT  NOT NULL REFERENCES cmc_mails (id) ON DELETE CASCADE,
    position           BIGINT  NOT NULL,
    start              BIGINT  NOT NULL,
    data               BYTEA   NOT NULL,
    PRIMARY KEY (mail_id, position, start)
);
