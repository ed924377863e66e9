-- The orchestrator's query side (SQLite: the embedded mode). Same shape as PostgreSQL.
CREATE TABLE campana (
    id_campana     BLOB PRIMARY KEY,
    saga_id        BLOB NOT NULL UNIQUE,
    estado         TEXT NOT NULL CHECK (estado IN ('pendiente', 'activa', 'rechazada')),
    motivo         TEXT,
    codigo         TEXT,
    paso_fallido   TEXT,
    solicitud      TEXT NOT NULL,
    resultado      TEXT,
    creada_en      TEXT NOT NULL,
    actualizada_en TEXT NOT NULL
);
CREATE INDEX campana_estado_idx ON campana (estado, creada_en DESC);
CREATE INDEX campana_creada_idx ON campana (creada_en DESC, id_campana DESC);

CREATE TABLE idempotencia (
    clave      TEXT PRIMARY KEY,
    id_campana BLOB NOT NULL REFERENCES campana (id_campana),
    creada_en  TEXT NOT NULL
);

CREATE TABLE evento_saliente (
    id_evento    BLOB PRIMARY KEY,
    saga_id      BLOB NOT NULL UNIQUE,
    topico       TEXT NOT NULL,
    tipo         TEXT NOT NULL,
    carga        TEXT NOT NULL,
    creado_en    TEXT NOT NULL,
    publicado_en TEXT
);
CREATE INDEX evento_saliente_pendiente_idx ON evento_saliente (creado_en) WHERE publicado_en IS NULL;
