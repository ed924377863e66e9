-- Replies that answered no command in flight, logged (`reply_ignored`) or, for a saga at rest
-- past its first few, only counted here: a redelivery storm must not grow a finished saga's log.
ALTER TABLE saga ADD COLUMN replies_ignored INTEGER NOT NULL DEFAULT 0;
