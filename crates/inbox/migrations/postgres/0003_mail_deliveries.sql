-- Inbound mail routed to mailboxes, on PostgreSQL: the same table, columns
-- and meaning as on SQLite (see the README). Times are BIGINT milliseconds
-- since 1970-01-01T00:00:00Z.

CREATE TABLE cmc_mail_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    mail_id       BIGINT  NOT NULL REFERENCES cmc_mails (id) ON DELETE CASCADE,
    mailbox       TEXT,                           -- NULL: unrouted
    recipients    TEXT    NOT NULL,               -- the envelope recipients that went this way (JSON, normalised)
    route         TEXT,                           -- the route that matched, as written; '*' for the fallback
    state         TEXT    NOT NULL
                  CHECK (state IN ('pending', 'processing', 'delivered', 'failed',
                                   'bounced', 'dead', 'unrouted')),
    attempts      BIGINT  NOT NULL DEFAULT 0,     -- handler runs started
    run_at        BIGINT  NOT NULL,               -- due from (pending and failed rows)
    locked_by     TEXT,                           -- the worker holding it (processing rows)
    locked_until  BIGINT,                        -- its lease's end (processing rows)
    last_error    TEXT,
    bounce_reason TEXT,                           -- why the handler bounced it
    created_at    BIGINT  NOT NULL,               -- when the mail was routed
    done_at       BIGINT                         -- when it was delivered, bounced or dead
);

-- A mail's deliveries. A recipient reaches its mailbox once: routing a
-- mail again (after a replay) adds rows only for recipients no row of
-- that mailbox holds yet.
CREATE INDEX cmc_mail_deliveries_mail ON cmc_mail_deliveries (mail_id);
-- Claims scan a mailbox's rows still to do, in order.
CREATE INDEX cmc_mail_deliveries_due ON cmc_mail_deliveries (mailbox, id)
    WHERE state IN ('pending', 'failed', 'processing');
-- Retention finds a mailbox's finished rows by age.
CREATE INDEX cmc_mail_deliveries_done ON cmc_mail_deliveries (mailbox, done_at)
    WHERE state IN ('delivered', 'bounced');
