-- The payment provider's own data (SQLite: the embedded mode). Same shape as PostgreSQL.
CREATE TABLE operacion (
    id_operacion    BLOB    PRIMARY KEY,
    id_pago         BLOB    NOT NULL UNIQUE,
    id_partner      TEXT    NOT NULL,
    valor_menor     INTEGER NOT NULL CHECK (valor_menor > 0),
    moneda          TEXT    NOT NULL,
    metodo_tipo     TEXT    NOT NULL,
    metodo_mascara  TEXT    NOT NULL,
    estado          TEXT    NOT NULL CHECK (estado IN ('AUTORIZADA', 'ANULADA', 'REEMBOLSADA')),
    id_confirmacion TEXT    NOT NULL UNIQUE,
    creada_en       TEXT    NOT NULL,
    actualizada_en  TEXT    NOT NULL
);

CREATE TABLE reembolso (
    id_reembolso BLOB    PRIMARY KEY,
    id_operacion BLOB    NOT NULL UNIQUE REFERENCES operacion (id_operacion),
    valor_menor  INTEGER NOT NULL,
    moneda       TEXT    NOT NULL,
    creado_en    TEXT    NOT NULL
);
