-- Attachments in chunks of at most 1 MiB: a 25 MiB attachment used to be
-- one 25 MiB value, which SQLite and sqlx each held whole (more than once)
-- while writing and reading it. A chunk is a slice of the attachment's
-- bytes starting at `start`; the attachment is its chunks in that order.
ALTER TABLE cmc_mail_attachments RENAME TO cmc_mail_attachments_0001;

CREATE TABLE cmc_mail_attachments (
    mail_id            INTEGER NOT NULL REFERENCES cmc_mails (id) ON DELETE CASCADE,
    position           INTEGER NOT NULL,               -- the attachment: 0, 1, ...
    start              INTEGER NOT NULL,               -- where this chunk starts in it, in bytes
    data               BLOB    NOT NULL,               -- at most 1 MiB
    PRIMARY KEY (mail_id, position, start)
);

INSERT INTO cmc_mail_attachments (mail_id, position, start, data)
    SELECT mail_id, position, 0, data FROM cmc_mail_attachments_0001;

DROP TABLE cmc_mail_attachments_0001;
