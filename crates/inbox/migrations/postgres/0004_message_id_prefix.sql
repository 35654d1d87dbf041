-- Message-IDs are written by a mail's sender, so their length is a
-- stranger's choice, and a B-tree entry holds at most 2 704 bytes: an
-- index on the whole value refused (SQLSTATE 54000) any row with a
-- Message-ID over about 2.7 KB. The indexes hold a bounded prefix (200
-- characters, at most 800 bytes) instead. A lookup compares the prefix
-- (indexed), then the whole value:
--   WHERE substr(message_id, 1, 200) = substr($1, 1, 200) AND message_id = $1

DROP INDEX cmc_events_message_id;
CREATE INDEX cmc_events_message_id ON cmc_events (substr(message_id, 1, 200));
DROP INDEX cmc_mails_message_id;
CREATE INDEX cmc_mails_message_id ON cmc_mails (substr(message_id, 1, 200));

-- One row: when an inbox last opened this store to serve, and which
-- process. Opening to serve writes it, so that a store that cannot be
-- written (a read-only file or file system, a read-only role or replica)
-- fails at start instead of answering 503 to every webhook.
CREATE TABLE cmc_inbox_opened (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    at      BIGINT  NOT NULL,
    process TEXT    NOT NULL
);
