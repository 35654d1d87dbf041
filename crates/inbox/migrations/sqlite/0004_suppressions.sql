-- The suppression list (issue 14, work in progress): one row per
-- recipient, normalised (trimmed, lower-cased), kept by the worker in the
-- transaction that marks an event done; and the history of every change.
-- Times are milliseconds since 1970-01-01T00:00:00Z.

CREATE TABLE cmc_suppressions (
    recipient     TEXT    PRIMARY KEY,
    reason        TEXT,                          -- hard, soft, cmc_suppressed, unsubscribed, cmc_list, manual; NULL: counts only
    since         INTEGER,
    until         INTEGER,                       -- NULL with a reason: until removed by hand
    note          TEXT,
    events        TEXT    NOT NULL DEFAULT '[]', -- the idempotency keys behind the suppression (JSON, at most 16)
    hard_count    INTEGER NOT NULL DEFAULT 0,
    soft_times    TEXT    NOT NULL DEFAULT '[]', -- the soft bounces within the window (JSON, milliseconds)
    unknown_count INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX cmc_suppressions_suppressed ON cmc_suppressions (reason, recipient) WHERE reason IS NOT NULL;

CREATE TABLE cmc_suppression_history (
    id              INTEGER PRIMARY KEY,
    recipient       TEXT    NOT NULL,
    idempotency_key TEXT    UNIQUE,              -- the event's; NULL for a change by hand
    change          TEXT    NOT NULL,            -- bounce 2, succeeded, cmc_list add, cmc_list remove, added, removed
    reason          TEXT,                        -- the suppression after the change
    note            TEXT,
    at              INTEGER NOT NULL
);
CREATE INDEX cmc_suppression_history_recipient ON cmc_suppression_history (recipient, id);
