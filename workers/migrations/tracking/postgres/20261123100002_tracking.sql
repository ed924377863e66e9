-- The tracking service's own data: one tracking context per campaign, one link per influencer.
CREATE TABLE contexto_tracking (
    id_tracking  UUID      PRIMARY KEY,
    id_campana   UUID      NOT NULL UNIQUE,
    id_marca     UUID      NOT NULL,
    fecha_inicio TIMESTAMP NOT NULL,
    fecha_fin    TIMESTAMP NOT NULL,
    estado       TEXT      NOT NULL CHECK (estado IN ('abierto', 'cerrado'))
);

CREATE TABLE enlace_tracking (
    codigo      TEXT PRIMARY KEY,
    id_tracking UUID NOT NULL REFERENCES contexto_tracking (id_tracking),
    nombre      TEXT NOT NULL,
    plataforma  TEXT NOT NULL,
    url         TEXT NOT NULL
);

-- Views, clicks and conversions recorded against an open context (POST /tracking/evento).
CREATE TABLE evento_tracking (
    id_evento      UUID        PRIMARY KEY,
    id_tracking    UUID        NOT NULL REFERENCES contexto_tracking (id_tracking),
    codigo         TEXT        REFERENCES enlace_tracking (codigo),
    tipo           TEXT        NOT NULL CHECK (tipo IN ('vista', 'clic', 'conversion')),
    valor_centavos BIGINT,
    ocurrido_en    TIMESTAMPTZ NOT NULL
);
CREATE INDEX evento_tracking_idx ON evento_tracking (id_tracking, ocurrido_en DESC);
