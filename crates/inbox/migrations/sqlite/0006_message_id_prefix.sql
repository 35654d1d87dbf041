-- Message-IDs are written by a mail's sender, so their length is a
-- stranger's choice: the indexes hold a bounded prefix (200 characters)
-- instead of the whole value. A lookup compares the prefix (indexed),
-- then the whole value:
--   WHERE substr(message_id, 1, 200) = substr(?1, 1, 200) AND message_id = ?1

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
