-- The orchestrator's query side of the payout saga: payouts as clients see them, kept up to
-- date from the saga log by the projector. One live payout per (partner, cycle): the unique
-- index is what makes "paid at most once" hold under concurrent requests.
CREATE TABLE vista_pago (
    id_pago          UUID        PRIMARY KEY,
    saga_id          UUID        NOT NULL UNIQUE,
    id_partner       TEXT        NOT NULL,
    id_ciclo         TEXT        NOT NULL,
    estado           TEXT        NOT NULL CHECK (estado IN ('PENDIENTE', 'COMPLETADO', 'FALLIDO')),
    codigo           TEXT,
    motivo           TEXT,
    paso_fallido     TEXT,
    solicitud        JSONB       NOT NULL,
    fecha_creacion      TIMESTAMPTZ NOT NULL,
    fecha_actualizacion TIMESTAMPTZ NOT NULL
);
-- A failed payout paid nothing: it frees its cycle for a new request.
CREATE UNIQUE INDEX vista_pago_ciclo_vigente ON vista_pago (id_partner, id_ciclo) WHERE estado <> 'FALLIDO';
CREATE INDEX vista_pago_estado_idx ON vista_pago (estado, fecha_creacion);
CREATE INDEX vista_pago_creado_idx ON vista_pago (fecha_creacion DESC, id_pago DESC);

-- The outbox of the payouts' integration events (PagoCompletado, PagoFallido): written in the
-- same transaction as the payout's final state, published by the relay, one per saga.
CREATE TABLE evento_pago_saliente (
    id_evento    UUID        PRIMARY KEY,
    saga_id      UUID        NOT NULL UNIQUE,
    topico       TEXT        NOT NULL,
    tipo         TEXT        NOT NULL,
    carga        JSONB       NOT NULL,
    creado_en    TIMESTAMPTZ NOT NULL,
    publicado_en TIMESTAMPTZ
);
CREATE INDEX evento_pago_saliente_pendiente_idx ON evento_pago_saliente (creado_en) WHERE publicado_en IS NULL;
