-- The events received per hour, type and status of the hours that are
-- closed (ended more than five minutes ago on the inbox's clock), counted
-- once from cmc_events and kept, so that the console's overview reads a
-- week as a few hundred rows instead of every event of the week (the same
-- on PostgreSQL: migrations/postgres/0016_event_hours.sql). Nothing on the
-- write path keeps them (no trigger): a read of a range of hours
-- (`Inbox::hours`) counts the closed hours it does not find here and
-- records them, in one short transaction, together with their markers.
--
-- A closed hour does not change: a row gets `received_at` once, when it is
-- stored; only the retention deletes rows, and it deletes these hours with
-- them (`Inbox::prune`). `hour` is the hour's number since
-- 1970-01-01T00:00:00Z (milliseconds / 3 600 000).

-- One row per hour counted, with events or without: an hour found here is
-- not counted again. Only the transaction that adds an hour's marker adds
-- its counts, so two readers filling at once never count an hour twice.
CREATE TABLE cmc_event_hours_done (
    hour        INTEGER NOT NULL PRIMARY KEY
);

-- The counts of the hours marked above (an hour without events has none).
-- `status` is NULL where the event has none, as in cmc_events.
CREATE TABLE cmc_event_hours (
    hour        INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    status      TEXT,
    n           INTEGER NOT NULL
);
CREATE INDEX cmc_event_hours_hour ON cmc_event_hours (hour);
