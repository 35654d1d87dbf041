-- The counters' functions (migrations 0014 and 0015) kept the search
-- path of the migration: the store's schema alone. PostgreSQL searches a
-- session's temporary tables first unless the path names `pg_temp`, so a
-- session with its own `TEMP TABLE cmc_state_counts` made the triggers
-- of its statements append there instead of to the store's counters.
-- They now search the store's schema, then `pg_temp` last (what the
-- migrator sets from this release on, for stores made new).
DO $$
DECLARE
    f TEXT;
BEGIN
    FOREACH f IN ARRAY ARRAY['cmc_count_rows', 'cmc_count_deliveries', 'cmc_count_truncate'] LOOP
        EXECUTE format('ALTER FUNCTION %I.%I() SET search_path = %I, pg_temp',
                       current_schema(), f, current_schema());
    END LOOP;
END $$;
