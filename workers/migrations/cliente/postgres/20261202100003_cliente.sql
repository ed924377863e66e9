-- The cliente service's own data: the partners who get paid, and the payments recorded on each.
CREATE TABLE cliente (
    id               TEXT        PRIMARY KEY,
    nombre           TEXT        NOT NULL,
    -- Trimmed and lower case: one client per address, however it was typed.
    email            TEXT        NOT NULL UNIQUE,
    cedula           TEXT        NOT NULL,
    fecha_nacimiento DATE        NOT NULL,
    fecha_registro   TIMESTAMPTZ NOT NULL,
    total_pagos      BIGINT      NOT NULL DEFAULT 0 CHECK (total_pagos >= 0),
    ultimo_pago      TIMESTAMPTZ
);

CREATE TABLE pago_cliente (
    id_pago       UUID        PRIMARY KEY,
    id_cliente    TEXT        NOT NULL REFERENCES cliente (id),
    valor_menor   BIGINT      NOT NULL,
    moneda        TEXT        NOT NULL,
    registrado_en TIMESTAMPTZ NOT NULL
);
CREATE INDEX pago_cliente_cliente_idx ON pago_cliente (id_cliente, registrado_en);
