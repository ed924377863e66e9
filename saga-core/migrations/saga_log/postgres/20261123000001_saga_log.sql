-- The saga log: one current-state row per saga, and its append-only history.
CREATE TABLE saga (
    saga_id      UUID        PRIMARY KEY,
    saga_type    TEXT        NOT NULL,
    saga_version INTEGER     NOT NULL,
    status       TEXT        NOT NULL CHECK (status IN ('running', 'compensating', 'completed', 'compensated', 'stuck', 'aborted')),
    -- seq of the last history entry; the optimistic-concurrency version
    version      BIGINT      NOT NULL,
    -- when the engine must look again (deadline or retry), ms since the epoch; NULL when nothing is due
    wake_at_ms   BIGINT,
    -- the fold of the history, as JSON (saga_core::saga::SagaState)
    state        JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX saga_active_idx ON saga (saga_id) WHERE status IN ('running', 'compensating');
CREATE INDEX saga_wake_idx ON saga (wake_at_ms) WHERE wake_at_ms IS NOT NULL;
CREATE INDEX saga_created_idx ON saga (created_at DESC, saga_id DESC);
CREATE INDEX saga_status_created_idx ON saga (status, created_at DESC);

CREATE TABLE saga_log (
    saga_id UUID        NOT NULL REFERENCES saga (saga_id),
    seq     BIGINT      NOT NULL,
    at      TIMESTAMPTZ NOT NULL,
    -- the event's type name, for SQL without JSON
    kind    TEXT        NOT NULL,
    event   JSONB       NOT NULL,
    PRIMARY KEY (saga_id, seq)
);

-- The history is append-only: refuse edits and deletions.
CREATE FUNCTION saga_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'saga_log is append-only';
END;
$$;
CREATE TRIGGER saga_log_no_update BEFORE UPDATE OR DELETE ON saga_log
    FOR EACH ROW EXECUTE FUNCTION saga_log_append_only();
