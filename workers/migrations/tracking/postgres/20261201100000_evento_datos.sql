-- Events as the public API takes them: `tipo_evento` is any kind the client names (1 to 50
-- characters; the summary counts vista, clic and conversion by name and every kind by its own),
-- and `datos` is the client's free-form object, kept as given.
ALTER TABLE evento_tracking ADD COLUMN datos JSONB NOT NULL DEFAULT '{}';
ALTER TABLE evento_tracking DROP CONSTRAINT evento_tracking_tipo_check;
ALTER TABLE evento_tracking ADD CONSTRAINT evento_tracking_tipo_check CHECK (char_length(tipo) BETWEEN 1 AND 50);
