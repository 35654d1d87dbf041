-- Rows per state, kept as rows change instead of counted (the same
-- meaning as on SQLite: migrations/sqlite/0014_state_counts.sql), so that
-- `Inbox::counts`, the `counts` subcommand and the console's overview
-- read a few rows instead of every row of the tables.
--
-- `tbl` is 'events', 'mails' or 'deliveries'; `scope` the row's source
-- (events, mails) or mailbox (deliveries; '' for an unrouted one). The
-- count of (tbl, scope, state) is the SUM of `n` over its rows.
--
-- Unlike SQLite's, this table is written by appending: each statement
-- that inserts, deletes or changes the state of rows appends one row per
-- (scope, state) it changed, with the difference, and never updates a
-- row. One row per state updated in place would be a hot row: every
-- concurrent insert of a fleet of receivers would wait on it until the
-- other's commit (and two transactions taking two such rows in opposite
-- orders would deadlock). An append takes no lock another writer waits
-- on. The reads of the counts first fold the appended rows into one per
-- (tbl, scope, state) (`DELETE ... RETURNING` then `INSERT` of the sums,
-- in one statement: a concurrent fold waits for this one and then skips
-- the rows it took, so nothing is counted twice or lost).
--
-- The triggers are statement-level, with transition tables: a batch of
-- 500 events inserted by one statement appends one row, not 500.
CREATE TABLE cmc_state_counts (
    tbl   TEXT   NOT NULL,
    scope TEXT   NOT NULL,
    state TEXT   NOT NULL,
    n     BIGINT NOT NULL
);

-- Events and mails: their scope is the source. TG_ARGV[0] names the table.
-- The search path is the one of the migration (the store's schema), so
-- that an application's connections with another search path still
-- reach this schema's table.
CREATE FUNCTION cmc_count_rows() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO cmc_state_counts (tbl, scope, state, n)
            SELECT TG_ARGV[0], source, state, COUNT(*) FROM cmc_new GROUP BY source, state;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO cmc_state_counts (tbl, scope, state, n)
            SELECT TG_ARGV[0], source, state, -COUNT(*) FROM cmc_old GROUP BY source, state;
    ELSE
        INSERT INTO cmc_state_counts (tbl, scope, state, n)
            SELECT TG_ARGV[0], scope, state, SUM(d) FROM (
                SELECT source AS scope, state, 1 AS d FROM cmc_new
                UNION ALL
                SELECT source, state, -1 FROM cmc_old
            ) changed GROUP BY scope, state HAVING SUM(d) <> 0;
    END IF;
    RETURN NULL;
END $$;

-- Deliveries: their scope is the mailbox.
CREATE FUNCTION cmc_count_deliveries() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO cmc_state_counts (tbl, scope, state, n)
            SELECT 'deliveries', COALESCE(mailbox, ''), state, COUNT(*) FROM cmc_new
            GROUP BY COALESCE(mailbox, ''), state;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO cmc_state_counts (tbl, scope, state, n)
            SELECT 'deliveries', COALESCE(mailbox, ''), state, -COUNT(*) FROM cmc_old
            GROUP BY COALESCE(mailbox, ''), state;
    ELSE
        INSERT INTO cmc_state_counts (tbl, scope, state, n)
            SELECT 'deliveries', scope, state, SUM(d) FROM (
                SELECT COALESCE(mailbox, '') AS scope, state, 1 AS d FROM cmc_new
                UNION ALL
                SELECT COALESCE(mailbox, ''), state, -1 FROM cmc_old
            ) changed GROUP BY scope, state HAVING SUM(d) <> 0;
    END IF;
    RETURN NULL;
END $$;

-- The triggers first: they lock the tables against writes until this
-- migration commits, so the counts below and the triggers' appends meet
-- exactly.
CREATE TRIGGER cmc_events_count_insert AFTER INSERT ON cmc_events
    REFERENCING NEW TABLE AS cmc_new FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_rows('events');
CREATE TRIGGER cmc_events_count_update AFTER UPDATE ON cmc_events
    REFERENCING OLD TABLE AS cmc_old NEW TABLE AS cmc_new
    FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_rows('events');
CREATE TRIGGER cmc_events_count_delete AFTER DELETE ON cmc_events
    REFERENCING OLD TABLE AS cmc_old FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_rows('events');

CREATE TRIGGER cmc_mails_count_insert AFTER INSERT ON cmc_mails
    REFERENCING NEW TABLE AS cmc_new FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_rows('mails');
CREATE TRIGGER cmc_mails_count_update AFTER UPDATE ON cmc_mails
    REFERENCING OLD TABLE AS cmc_old NEW TABLE AS cmc_new
    FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_rows('mails');
CREATE TRIGGER cmc_mails_count_delete AFTER DELETE ON cmc_mails
    REFERENCING OLD TABLE AS cmc_old FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_rows('mails');

CREATE TRIGGER cmc_mail_deliveries_count_insert AFTER INSERT ON cmc_mail_deliveries
    REFERENCING NEW TABLE AS cmc_new FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_deliveries();
CREATE TRIGGER cmc_mail_deliveries_count_update AFTER UPDATE ON cmc_mail_deliveries
    REFERENCING OLD TABLE AS cmc_old NEW TABLE AS cmc_new
    FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_deliveries();
CREATE TRIGGER cmc_mail_deliveries_count_delete AFTER DELETE ON cmc_mail_deliveries
    REFERENCING OLD TABLE AS cmc_old FOR EACH STATEMENT EXECUTE FUNCTION cmc_count_deliveries();

INSERT INTO cmc_state_counts (tbl, scope, state, n)
    SELECT 'events', source, state, COUNT(*) FROM cmc_events GROUP BY source, state;
INSERT INTO cmc_state_counts (tbl, scope, state, n)
    SELECT 'mails', source, state, COUNT(*) FROM cmc_mails GROUP BY source, state;
INSERT INTO cmc_state_counts (tbl, scope, state, n)
    SELECT 'deliveries', COALESCE(mailbox, ''), state, COUNT(*) FROM cmc_mail_deliveries
    GROUP BY COALESCE(mailbox, ''), state;

-- Dead rows of one source, newest first (the console's dead rows
-- filtered by source, `Inbox::dead` of a source). The source is a name
-- from the receiver's configuration, never a stranger's text, so the
-- index entry stays small.
CREATE INDEX cmc_events_dead_source ON cmc_events (source, id) WHERE state = 'dead';
CREATE INDEX cmc_mails_dead_source ON cmc_mails (source, id) WHERE state = 'dead';
