-- What the web console reads and records (the same on PostgreSQL:
-- migrations/postgres/0011_console.sql).
--
-- Who set a row back to pending last, and when: a replay with an actor
-- (`Inbox::replay_by`, the console's replays, by the user logged in)
-- writes both; a replay without one writes the time and NULL. NULL on
-- both for a row never replayed. An application sharing the schema sees
-- two more nullable columns; its inserts need not name them.
ALTER TABLE cmc_events ADD COLUMN replayed_by TEXT;
ALTER TABLE cmc_events ADD COLUMN replayed_at INTEGER;
ALTER TABLE cmc_mails ADD COLUMN replayed_by TEXT;
ALTER TABLE cmc_mails ADD COLUMN replayed_at INTEGER;

-- Events per hour by type and status over a range of time (the
-- overview's chart): the range through this index, which also holds the
-- grouped columns, so that the table's rows are not read.
CREATE INDEX cmc_events_received_at ON cmc_events (received_at, event_type, status);

-- Search by recipient, without regard to ASCII case: a prefix of the
-- address, as for message_id (migration 0006), so that a stranger's long
-- address makes no long index key.
CREATE INDEX cmc_events_recipient ON cmc_events (lower(substr(recipient, 1, 200)));
CREATE INDEX cmc_mails_envelope_to ON cmc_mails (lower(substr(envelope_to, 1, 200)));
