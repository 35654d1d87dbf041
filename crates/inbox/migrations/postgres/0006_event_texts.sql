-- Long text fields of events stored apart from the row's JSON, in chunks
-- like attachments: the same table and meaning as on SQLite (see the
-- README). Rows stored before keep every field in their JSON.
CREATE TABLE cmc_event_texts (
    event_id           BIGINT  NOT NULL REFERENCES cmc_events (id) ON DELETE CASCADE,
    field              TEXT    NOT NULL,
    start              BIGINT  NOT NULL,
    data               BYTEA   NOT NULL,
    PRIMARY KEY (event_id, field, start)
);
