-- Long text fields of events stored apart from the row's JSON, in chunks
-- like attachments (written whole into one value, SQLite and sqlx each
-- copied a long subject several times): a field is its chunks in order
-- of `start`, and the row's JSON holds it empty. Rows stored before this
-- migration keep every field in their JSON, and read back as they were.
CREATE TABLE cmc_event_texts (
    event_id           INTEGER NOT NULL REFERENCES cmc_events (id) ON DELETE CASCADE,
    field              TEXT    NOT NULL,               -- subject
    start              INTEGER NOT NULL,               -- where this chunk starts, in bytes
    data               BLOB    NOT NULL,               -- at most 1 MiB of the field's UTF-8
    PRIMARY KEY (event_id, field, start)
);
