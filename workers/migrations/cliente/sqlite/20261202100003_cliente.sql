-- The cliente service's own data (SQLite: the embedded mode). Same shape as PostgreSQL.
CREATE TABLE cliente (
    id               TEXT    PRIMARY KEY,
    nombre           TEXT    NOT NULL,
    email            TEXT    NOT NULL UNIQUE,
    cedula           TEXT    NOT NULL,
    fecha_nacimiento TEXT    NOT NULL,
    fecha_registro   TEXT    NOT NULL,
    total_pagos      INTEGER NOT NULL DEFAULT 0 CHECK (total_pagos >= 0),
    ultimo_pago      TEXT
);

CREATE TABLE pago_cliente (
    id_pago       BLOB    PRIMARY KEY,
    id_cliente    TEXT    NOT NULL REFERENCES cliente (id),
    valor_menor   INTEGER NOT NULL,
    moneda        TEXT    NOT NULL,
    registrado_en TEXT    NOT NULL
);
CREATE INDEX pago_cliente_cliente_idx ON pago_cliente (id_cliente, registrado_en);
