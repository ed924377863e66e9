-- Dead letters collected from the transport's dead-letter queues, for operators: each kept with
-- its payload and properties so it can be redriven to its original topic. One row per dead
-- letter, keyed by where it was dead-lettered from and its id there, so a dead letter the
-- transport delivers again is recorded once. Pending while `redriven_at` is NULL.
-- Same shape as the PostgreSQL schema; ids are 16-byte BLOBs, times RFC 3339 text, JSON text.
CREATE TABLE dead_letter (
    id                BLOB    PRIMARY KEY,
    topic             TEXT    NOT NULL,
    dead_letter_topic TEXT    NOT NULL,
    source_id         TEXT    NOT NULL,
    message_id        TEXT,
    saga_id           BLOB,
    saga_type         TEXT,
    step              TEXT,
    kind              TEXT CHECK (kind IN ('action', 'compensation', 'reply')),
    message_type      TEXT,
    reason            TEXT    NOT NULL,
    payload           BLOB    NOT NULL,
    properties        TEXT    NOT NULL,
    dead_at           TEXT    NOT NULL,
    recorded_at       TEXT    NOT NULL,
    redriven_at       TEXT,
    redrives          INTEGER NOT NULL DEFAULT 0,
    notas             TEXT    NOT NULL DEFAULT '[]',
    UNIQUE (topic, source_id)
);
CREATE INDEX dead_letter_dead_at_idx ON dead_letter (dead_at DESC, id DESC);
CREATE INDEX dead_letter_saga_idx ON dead_letter (saga_id) WHERE saga_id IS NOT NULL;
CREATE INDEX dead_letter_pending_idx ON dead_letter (topic) WHERE redriven_at IS NULL;
