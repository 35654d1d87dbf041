-- `TRUNCATE` of a counted table (`TRUNCATE cmc_mails CASCADE` by an
-- operator, a test's cleanup) fires no DELETE trigger, so the counters of
-- migration 0014 kept the rows it removed. These statement-level
-- triggers cancel, when a counted table is truncated, what its counters
-- hold: they append, per (scope, state), the opposite of the sum the
-- table's counter rows have (TG_ARGV[0] names the table).
--
-- Appending keeps the rule of 0014 (writers only append), and it is
-- exact whatever a concurrent fold does: a fold deletes rows and inserts
-- their sums in one statement, so the rows this trigger reads sum to the
-- same whether it sees them before or after the fold. No other writer of
-- the table runs meanwhile: `TRUNCATE` holds its table's ACCESS
-- EXCLUSIVE lock, so every transaction that changed it has ended. With
-- `CASCADE` the trigger of each truncated table fires (deliveries too).
--
-- Left uncovered, and repaired by `Inbox::recount` (`cmc-receiver counts
-- --recount`): triggers disabled (`ALTER TABLE ... DISABLE TRIGGER`,
-- `session_replication_role = replica`), a `TRUNCATE` in a REPEATABLE READ
-- transaction whose snapshot predates another's commit, and writes to
-- `cmc_state_counts` itself.
CREATE FUNCTION cmc_count_truncate() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO cmc_state_counts (tbl, scope, state, n)
        SELECT tbl, scope, state, -SUM(n) FROM cmc_state_counts
        WHERE tbl = TG_ARGV[0] GROUP BY tbl, scope, state HAVING SUM(n) <> 0;
    RETURN NULL;
END $$;

CREATE TRIGGER cmc_events_count_truncate AFTER TRUNCATE ON cmc_events
    FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_truncate('events');
CREATE TRIGGER cmc_mails_count_truncate AFTER TRUNCATE ON cmc_mails
    FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_truncate('mails');
CREATE TRIGGER cmc_mail_deliveries_count_truncate AFTER TRUNCATE ON cmc_mail_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_truncate('deliveries');
