-- The state of each target a handler sends to (the receiver's relay
-- targets and their circuit breakers), as the process sending to it last
-- changed it, so that programs other than that process (`cmc-receiver
-- counts`, a console of its own) see that a target is paused (the same on
-- PostgreSQL: migrations/postgres/0013_target_states.sql).
--
-- One row per target and writer (the process, named by itself): several
-- processes sending to one target each keep their own row. Written only
-- when the state changes (paused, probing, closed), never per attempt.
-- `until` is when a paused or probing state ends unless renewed (the
-- pause's end, the probe's deadline): a row past it tells no more than
-- that, since its writer may have stopped. Rows unchanged for longer than
-- the retention are pruned. Times are milliseconds since
-- 1970-01-01T00:00:00Z. `target` is shown to operators: the writer stores
-- it without credentials or query.
CREATE TABLE cmc_target_states (
    target      TEXT    NOT NULL,
    writer      TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('closed', 'paused', 'probing')),
    failures    INTEGER NOT NULL,
    until       INTEGER,
    pauses      INTEGER NOT NULL,
    changed_at  INTEGER NOT NULL,
    PRIMARY KEY (target, writer)
);
