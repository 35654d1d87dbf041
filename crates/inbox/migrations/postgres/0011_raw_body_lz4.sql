-- Kept request bodies are compressed with LZ4 rather than PostgreSQL's
-- default pglz: for the JSON and multipart bodies CMC sends, LZ4 takes
-- about a tenth of pglz's CPU for a little more space, and each accepted
-- request pays it before its 200. A server before PostgreSQL 14 (no
-- per-column compression) or built without LZ4 keeps pglz: nothing else
-- changes. Rows already stored keep the compression they were written with.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE cmc_raw_requests ALTER COLUMN body SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE cmc_raw_request_parts ALTER COLUMN data SET COMPRESSION lz4';
    END IF;
EXCEPTION
    WHEN feature_not_supported OR invalid_parameter_value THEN
        NULL;
END
$$;
