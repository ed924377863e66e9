-- The orchestrator's query side: campaigns as clients see them, kept up to date from the saga
-- log by the projector, and the Idempotency-Key answers of POST /afiliaciones/campana.
CREATE TABLE campana (
    id_campana     UUID        PRIMARY KEY,
    saga_id        UUID        NOT NULL UNIQUE,
    estado         TEXT        NOT NULL CHECK (estado IN ('pendiente', 'activa', 'rechazada')),
    motivo         TEXT,
    codigo         TEXT,
    paso_fallido   TEXT,
    solicitud      JSONB       NOT NULL,
    resultado      JSONB,
    creada_en      TIMESTAMPTZ NOT NULL,
    actualizada_en TIMESTAMPTZ NOT NULL
);
CREATE INDEX campana_estado_idx ON campana (estado, creada_en DESC);
CREATE INDEX campana_creada_idx ON campana (creada_en DESC, id_campana DESC);

CREATE TABLE idempotencia (
    clave      TEXT        PRIMARY KEY,
    id_campana UUID        NOT NULL REFERENCES campana (id_campana),
    creada_en  TIMESTAMPTZ NOT NULL
);

-- The outbox of integration events (CampanaCreada, CampanaRechazada): written in the same
-- transaction as the campaign's final state, published by the relay, one per saga.
CREATE TABLE evento_saliente (
    id_evento    UUID        PRIMARY KEY,
    saga_id      UUID        NOT NULL UNIQUE,
    topico       TEXT        NOT NULL,
    tipo         TEXT        NOT NULL,
    carga        JSONB       NOT NULL,
    creado_en    TIMESTAMPTZ NOT NULL,
    publicado_en TIMESTAMPTZ
);
CREATE INDEX evento_saliente_pendiente_idx ON evento_saliente (creado_en) WHERE publicado_en IS NULL;
