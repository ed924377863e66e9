-- A saga the timer cannot drive (its type no longer registered, its state unreadable, a
-- transition that panics) is deferred: its wake-up time pushed forward, further each time, and
-- flagged here for an operator, so it does not hold the head of the timer's batch. A successful
-- transition clears the flag.
ALTER TABLE saga ADD COLUMN wake_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE saga ADD COLUMN wake_error TEXT;
CREATE INDEX saga_failing_idx ON saga (saga_id) WHERE wake_failures > 0;
