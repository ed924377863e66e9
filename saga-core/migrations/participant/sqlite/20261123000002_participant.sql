-- Participant records (saga_core::participant), kept in each worker's own database.
CREATE TABLE participant_message (
    message_id  BLOB    PRIMARY KEY,
    saga_id     BLOB    NOT NULL,
    step        TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('action', 'compensation')),
    attempt     INTEGER NOT NULL,
    reply       TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL
);
CREATE INDEX participant_message_saga_idx ON participant_message (saga_id);

CREATE TABLE participant_step (
    saga_id      BLOB NOT NULL,
    step         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('applied', 'refused', 'compensated', 'tombstone')),
    action_reply TEXT,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (saga_id, step)
);
