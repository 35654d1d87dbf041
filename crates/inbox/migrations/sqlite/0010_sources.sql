-- Which CMC account (named source of the layer) each row came from: the
-- name the layer decided for its request (`default` for a layer
-- configured for one account). Rows stored before sources existed came
-- from the one account there was: `default`.
--
-- No index: the reads that take a source (counts, dead rows, replay,
-- history) already walk the table or an index of their own (state, id,
-- message_id) and test the source on the rows they find.
ALTER TABLE cmc_events ADD COLUMN source TEXT NOT NULL DEFAULT 'default';
ALTER TABLE cmc_mails ADD COLUMN source TEXT NOT NULL DEFAULT 'default';

-- A kept request's source: NULL for a refused body whose source was not
-- decided (the layer decides it from the body's api_key, which a refused
-- body may not carry readably).
ALTER TABLE cmc_raw_requests ADD COLUMN source TEXT;
UPDATE cmc_raw_requests SET source = 'default' WHERE outcome = 'stored';

-- Which source's event changed a suppression (NULL: a change made by
-- hand, or recorded before sources existed).
ALTER TABLE cmc_suppression_history ADD COLUMN source TEXT;
