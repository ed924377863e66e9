-- The payment provider's own data: one operation per payout (the payout id is the provider's
-- idempotency key), and the refunds of operations undone after settlement.
CREATE TABLE operacion (
    id_operacion    UUID        PRIMARY KEY,
    id_pago         UUID        NOT NULL UNIQUE,
    id_partner      TEXT        NOT NULL,
    valor_menor     BIGINT      NOT NULL CHECK (valor_menor > 0),
    moneda          TEXT        NOT NULL,
    metodo_tipo     TEXT        NOT NULL,
    metodo_mascara  TEXT        NOT NULL,
    estado          TEXT        NOT NULL CHECK (estado IN ('AUTORIZADA', 'ANULADA', 'REEMBOLSADA')),
    id_confirmacion TEXT        NOT NULL UNIQUE,
    creada_en       TIMESTAMPTZ NOT NULL,
    actualizada_en  TIMESTAMPTZ NOT NULL
);

CREATE TABLE reembolso (
    id_reembolso UUID        PRIMARY KEY,
    id_operacion UUID        NOT NULL UNIQUE REFERENCES operacion (id_operacion),
    valor_menor  BIGINT      NOT NULL,
    moneda       TEXT        NOT NULL,
    creado_en    TIMESTAMPTZ NOT NULL
);
