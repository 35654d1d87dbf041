-- Whether anyone keeps the suppression list: `kept` is when a worker that
-- keeps it first ran (the list holds what was done from then on),
-- `skipped` when a worker that does not keep it last started marking
-- events done. Times are milliseconds since 1970-01-01T00:00:00Z.
CREATE TABLE cmc_suppression_keeping (
    fact          TEXT    PRIMARY KEY CHECK (fact IN ('kept', 'skipped')),
    at            BIGINT  NOT NULL
);

-- A store whose list a worker kept before this table existed: the first
-- change a worker made is when the keeping began, as far as anyone knows.
INSERT INTO cmc_suppression_keeping (fact, at)
SELECT 'kept', MIN(at) FROM cmc_suppression_history
WHERE idempotency_key IS NOT NULL
HAVING COUNT(*) > 0;
