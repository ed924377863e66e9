-- The pagos service's own data: payouts to partners, one per partner and payment cycle, and
-- their transactions (the platform's commission).
CREATE TABLE pago (
    id_pago         UUID        PRIMARY KEY,
    id_partner      TEXT        NOT NULL,
    id_ciclo        TEXT        NOT NULL,
    valor_menor     BIGINT      NOT NULL CHECK (valor_menor > 0),
    moneda          TEXT        NOT NULL,
    metodo_tipo     TEXT        NOT NULL,
    metodo_mascara  TEXT        NOT NULL,
    estado          TEXT        NOT NULL CHECK (estado IN ('PROCESANDO', 'COMPLETADO', 'FALLIDO')),
    id_confirmacion TEXT,
    creado_en       TIMESTAMPTZ NOT NULL,
    actualizado_en  TIMESTAMPTZ NOT NULL,
    -- A partner's cycle is paid at most once, even by payouts registered at the same time.
    UNIQUE (id_partner, id_ciclo)
);

CREATE TABLE transaccion_pago (
    id_transaccion UUID        PRIMARY KEY,
    id_pago        UUID        NOT NULL REFERENCES pago (id_pago),
    tipo           TEXT        NOT NULL,
    valor_menor    BIGINT      NOT NULL,
    moneda         TEXT        NOT NULL,
    porcentaje     BIGINT      NOT NULL,
    creada_en      TIMESTAMPTZ NOT NULL
);
CREATE INDEX transaccion_pago_pago_idx ON transaccion_pago (id_pago);
