-- The saga log: one current-state row per saga, and its append-only history.
-- Same shape as the PostgreSQL schema; ids are 16-byte BLOBs, times RFC 3339 text, JSON text.
CREATE TABLE saga (
    saga_id      BLOB    PRIMARY KEY,
    saga_type    TEXT    NOT NULL,
    saga_version INTEGER NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('running', 'compensating', 'completed', 'compensated', 'stuck', 'aborted')),
    version      INTEGER NOT NULL,
    wake_at_ms   INTEGER,
    state        TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
CREATE INDEX saga_active_idx ON saga (saga_id) WHERE status IN ('running', 'compensating');
CREATE INDEX saga_wake_idx ON saga (wake_at_ms) WHERE wake_at_ms IS NOT NULL;
CREATE INDEX saga_created_idx ON saga (created_at DESC, saga_id DESC);

CREATE TABLE saga_log (
    saga_id BLOB    NOT NULL REFERENCES saga (saga_id),
    seq     INTEGER NOT NULL,
    at      TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    event   TEXT    NOT NULL,
    PRIMARY KEY (saga_id, seq)
);

CREATE TRIGGER saga_log_no_update BEFORE UPDATE ON saga_log
BEGIN
    SELECT RAISE(ABORT, 'saga_log is append-only');
END;
CREATE TRIGGER saga_log_no_delete BEFORE DELETE ON saga_log
BEGIN
    SELECT RAISE(ABORT, 'saga_log is append-only');
END;
