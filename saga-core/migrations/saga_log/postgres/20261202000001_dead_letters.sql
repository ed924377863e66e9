-- Dead letters collected from the transport's dead-letter queues, for operators: each kept with
-- its payload and properties so it can be redriven to its original topic. One row per dead
-- letter, keyed by where it was dead-lettered from and its id there, so a dead letter the
-- transport delivers again is recorded once. Pending while `redriven_at` is NULL.
CREATE TABLE dead_letter (
    id                UUID        PRIMARY KEY,
    -- the original address (`comandos.marca`) and the dead-letter queue's name
    topic             TEXT        NOT NULL,
    dead_letter_topic TEXT        NOT NULL,
    -- the message's id on its original topic (saga_core::transport::DeadLetter::source_id)
    source_id         TEXT        NOT NULL,
    -- what its properties tell, when they do (a garbage message has none)
    message_id        TEXT,
    saga_id           UUID,
    saga_type         TEXT,
    step              TEXT,
    kind              TEXT CHECK (kind IN ('action', 'compensation', 'reply')),
    message_type      TEXT,
    reason            TEXT        NOT NULL,
    payload           BYTEA       NOT NULL,
    properties        JSONB       NOT NULL,
    dead_at           TIMESTAMPTZ NOT NULL,
    recorded_at       TIMESTAMPTZ NOT NULL,
    redriven_at       TIMESTAMPTZ,
    redrives          INTEGER     NOT NULL DEFAULT 0,
    -- the operators' notes, oldest first (a JSON array of strings)
    notas             JSONB       NOT NULL DEFAULT '[]',
    UNIQUE (topic, source_id)
);
CREATE INDEX dead_letter_dead_at_idx ON dead_letter (dead_at DESC, id DESC);
CREATE INDEX dead_letter_saga_idx ON dead_letter (saga_id) WHERE saga_id IS NOT NULL;
CREATE INDEX dead_letter_pending_idx ON dead_letter (topic) WHERE redriven_at IS NULL;
