-- The orchestrator's query side of the payout saga (SQLite: the embedded mode). Same shape as
-- PostgreSQL.
CREATE TABLE vista_pago (
    id_pago          BLOB PRIMARY KEY,
    saga_id          BLOB NOT NULL UNIQUE,
    id_partner       TEXT NOT NULL,
    id_ciclo         TEXT NOT NULL,
    estado           TEXT NOT NULL CHECK (estado IN ('PENDIENTE', 'COMPLETADO', 'FALLIDO')),
    codigo           TEXT,
    motivo           TEXT,
    paso_fallido     TEXT,
    solicitud        TEXT NOT NULL,
    fecha_creacion      TEXT NOT NULL,
    fecha_actualizacion TEXT NOT NULL
);
-- A failed payout paid nothing: it frees its cycle for a new request.
CREATE UNIQUE INDEX vista_pago_ciclo_vigente ON vista_pago (id_partner, id_ciclo) WHERE estado <> 'FALLIDO';
CREATE INDEX vista_pago_estado_idx ON vista_pago (estado, fecha_creacion);
CREATE INDEX vista_pago_creado_idx ON vista_pago (fecha_creacion DESC, id_pago DESC);

CREATE TABLE evento_pago_saliente (
    id_evento    BLOB PRIMARY KEY,
    saga_id      BLOB NOT NULL UNIQUE,
    topico       TEXT NOT NULL,
    tipo         TEXT NOT NULL,
    carga        TEXT NOT NULL,
    creado_en    TEXT NOT NULL,
    publicado_en TEXT
);
CREATE INDEX evento_pago_saliente_pendiente_idx ON evento_pago_saliente (creado_en) WHERE publicado_en IS NULL;
