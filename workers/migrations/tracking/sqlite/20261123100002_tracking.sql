-- The tracking service's own data (SQLite: the embedded mode). Same shape as PostgreSQL.
CREATE TABLE contexto_tracking (
    id_tracking  BLOB PRIMARY KEY,
    id_campana   BLOB NOT NULL UNIQUE,
    id_marca     BLOB NOT NULL,
    fecha_inicio TEXT NOT NULL,
    fecha_fin    TEXT NOT NULL,
    estado       TEXT NOT NULL CHECK (estado IN ('abierto', 'cerrado'))
);

CREATE TABLE enlace_tracking (
    codigo      TEXT PRIMARY KEY,
    id_tracking BLOB NOT NULL REFERENCES contexto_tracking (id_tracking),
    nombre      TEXT NOT NULL,
    plataforma  TEXT NOT NULL,
    url         TEXT NOT NULL
);

CREATE TABLE evento_tracking (
    id_evento      BLOB    PRIMARY KEY,
    id_tracking    BLOB    NOT NULL REFERENCES contexto_tracking (id_tracking),
    codigo         TEXT    REFERENCES enlace_tracking (codigo),
    tipo           TEXT    NOT NULL CHECK (tipo IN ('vista', 'clic', 'conversion')),
    valor_centavos INTEGER,
    ocurrido_en    TEXT    NOT NULL
);
CREATE INDEX evento_tracking_idx ON evento_tracking (id_tracking, ocurrido_en DESC);
