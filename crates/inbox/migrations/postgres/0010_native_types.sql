-- PostgreSQL's own types for the inbox's times and JSON (SQLite keeps
-- INTEGER milliseconds and TEXT JSON): every time becomes TIMESTAMPTZ,
-- the same instant to the millisecond (the crate's clock is milliseconds;
-- the product below is a whole number of microseconds far below 2^53, so
-- exact), and the rows' JSON (cmc_events.event, cmc_mails.mail) and the
-- suppression list's (events, soft_times) become JSONB.
--
-- JSONB refuses the escape \u0000, which a stranger's mail or event text
-- may carry (the JSON of such a row escapes U+0000, and the row keeps
-- every character). Such a row keeps its JSON as written in
-- event_exact / mail_exact, which reads take first; the JSONB holds it
-- with each U+0000 made U+FFFD, for queries. Every other row has NULL
-- there. An escaped backslash followed by u0000 (the text \u0000) is no
-- escape: the pattern requires an even run of backslashes before it.
-- A row whose JSON may hold a number with an exponent or of more than 64
-- digits (which JSONB would write out differently) keeps its text too;
-- the patterns may also match such text inside a string, which only
-- costs a copy.
--
-- cmc_mail_deliveries.recipients stays TEXT: it holds envelope recipients
-- kept as written when they are no address (any character, U+0000
-- included), and is read back to compare them exactly.

ALTER TABLE cmc_events ADD COLUMN event_exact TEXT;
UPDATE cmc_events SET event_exact = event WHERE event ~ '(?<!\\)((?:\\\\)*)\\u0000'
    OR event ~ '[0-9][eE][-+]?[0-9]' OR event ~ '[0-9]{65}';
ALTER TABLE cmc_events
    ALTER COLUMN received_at  TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + received_at * INTERVAL '1 millisecond',
    ALTER COLUMN run_at       TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + run_at * INTERVAL '1 millisecond',
    ALTER COLUMN locked_until TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + locked_until * INTERVAL '1 millisecond',
    ALTER COLUMN done_at      TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + done_at * INTERVAL '1 millisecond',
    ALTER COLUMN event        TYPE JSONB USING (CASE WHEN event_exact IS NULL THEN event
        ELSE regexp_replace(event, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g') END)::JSONB;

ALTER TABLE cmc_mails ADD COLUMN mail_exact TEXT;
UPDATE cmc_mails SET mail_exact = mail WHERE mail ~ '(?<!\\)((?:\\\\)*)\\u0000'
    OR mail ~ '[0-9][eE][-+]?[0-9]' OR mail ~ '[0-9]{65}';
ALTER TABLE cmc_mails
    ALTER COLUMN received_at  TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + received_at * INTERVAL '1 millisecond',
    ALTER COLUMN run_at       TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + run_at * INTERVAL '1 millisecond',
    ALTER COLUMN locked_until TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + locked_until * INTERVAL '1 millisecond',
    ALTER COLUMN done_at      TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + done_at * INTERVAL '1 millisecond',
    ALTER COLUMN mail         TYPE JSONB USING (CASE WHEN mail_exact IS NULL THEN mail
        ELSE regexp_replace(mail, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g') END)::JSONB;

ALTER TABLE cmc_mail_deliveries
    ALTER COLUMN run_at       TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + run_at * INTERVAL '1 millisecond',
    ALTER COLUMN locked_until TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + locked_until * INTERVAL '1 millisecond',
    ALTER COLUMN created_at   TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + created_at * INTERVAL '1 millisecond',
    ALTER COLUMN done_at      TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + done_at * INTERVAL '1 millisecond';

-- The defaults of the JSON columns are TEXT: dropped, then set again.
ALTER TABLE cmc_suppressions ALTER COLUMN events DROP DEFAULT;
ALTER TABLE cmc_suppressions ALTER COLUMN soft_times DROP DEFAULT;
ALTER TABLE cmc_suppressions
    ALTER COLUMN since      TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + since * INTERVAL '1 millisecond',
    ALTER COLUMN until      TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + until * INTERVAL '1 millisecond',
    ALTER COLUMN updated_at TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + updated_at * INTERVAL '1 millisecond',
    ALTER COLUMN events     TYPE JSONB USING events::JSONB,
    ALTER COLUMN soft_times TYPE JSONB USING soft_times::JSONB;
ALTER TABLE cmc_suppressions ALTER COLUMN events SET DEFAULT '[]';
ALTER TABLE cmc_suppressions ALTER COLUMN soft_times SET DEFAULT '[]';

ALTER TABLE cmc_suppression_history
    ALTER COLUMN at TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + at * INTERVAL '1 millisecond';
ALTER TABLE cmc_suppression_keeping
    ALTER COLUMN at TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + at * INTERVAL '1 millisecond';
ALTER TABLE cmc_inbox_opened
    ALTER COLUMN at TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + at * INTERVAL '1 millisecond';
ALTER TABLE cmc_raw_requests
    ALTER COLUMN received_at TYPE TIMESTAMPTZ USING TIMESTAMPTZ 'epoch' + received_at * INTERVAL '1 millisecond';
