-- Events as the public API takes them (see the PostgreSQL migration). SQLite cannot drop a
-- column's CHECK, so the table is rebuilt; nothing references it.
CREATE TABLE evento_tracking_nuevo (
    id_evento      BLOB    PRIMARY KEY,
    id_tracking    BLOB    NOT NULL REFERENCES contexto_tracking (id_tracking),
    codigo         TEXT    REFERENCES enlace_tracking (codigo),
    tipo           TEXT    NOT NULL CHECK (length(tipo) BETWEEN 1 AND 50),
    valor_centavos INTEGER,
    ocurrido_en    TEXT    NOT NULL,
    datos          TEXT    NOT NULL DEFAULT '{}'
);
INSERT INTO evento_tracking_nuevo (id_evento, id_tracking, codigo, tipo, valor_centavos, ocurrido_en)
    SELECT id_evento, id_tracking, codigo, tipo, valor_centavos, ocurrido_en FROM evento_tracking;
DROP TABLE evento_tracking;
ALTER TABLE evento_tracking_nuevo RENAME TO evento_tracking;
CREATE INDEX evento_tracking_idx ON evento_tracking (id_tracking, ocurrido_en DESC);
