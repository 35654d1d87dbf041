-- The rows held by workers, by the end of their lease: the sweep that
-- marks dead a row whose lease ran out on its last attempt reads only
-- these (it used to scan every pending row on each worker round).
CREATE INDEX cmc_events_leases ON cmc_events (locked_until) WHERE state = 'running';
CREATE INDEX cmc_mails_leases ON cmc_mails (locked_until) WHERE state = 'running';
