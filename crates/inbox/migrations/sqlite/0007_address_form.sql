-- Addresses have a new normal form: only ASCII is lower-cased, non-ASCII
-- text is in NFC and never folded into ASCII, IDN domains are A-labels.
-- SQL cannot compute it: this row asks the next inbox that opens the
-- store to serve (or `migrate`) to re-key the suppression list's rows
-- whose address is not ASCII, in one transaction that deletes the row.
CREATE TABLE cmc_suppressions_rekey (pending INTEGER PRIMARY KEY);
INSERT INTO cmc_suppressions_rekey (pending) VALUES (1);
