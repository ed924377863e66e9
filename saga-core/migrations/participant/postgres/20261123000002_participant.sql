-- Participant records (saga_core::participant), kept in each worker's own database.
-- Every message handled, with the reply it got: a redelivery gets the same reply.
CREATE TABLE participant_message (
    message_id  UUID        PRIMARY KEY,
    saga_id     UUID        NOT NULL,
    step        TEXT        NOT NULL,
    kind        TEXT        NOT NULL CHECK (kind IN ('action', 'compensation')),
    attempt     INTEGER     NOT NULL,
    reply       JSONB       NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX participant_message_saga_idx ON participant_message (saga_id);

-- Where each saga step stands here: the effect happens once per step, whatever the attempts.
-- 'tombstone' = compensated before the action arrived; the late action is refused.
CREATE TABLE participant_step (
    saga_id      UUID        NOT NULL,
    step         TEXT        NOT NULL,
    status       TEXT        NOT NULL CHECK (status IN ('applied', 'refused', 'compensated', 'tombstone')),
    action_reply JSONB,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (saga_id, step)
);
