-- The pagos service's own data (SQLite: the embedded mode). Same shape as PostgreSQL.
CREATE TABLE pago (
    id_pago         BLOB    PRIMARY KEY,
    id_partner      TEXT    NOT NULL,
    id_ciclo        TEXT    NOT NULL,
    valor_menor     INTEGER NOT NULL CHECK (valor_menor > 0),
    moneda          TEXT    NOT NULL,
    metodo_tipo     TEXT    NOT NULL,
    metodo_mascara  TEXT    NOT NULL,
    estado          TEXT    NOT NULL CHECK (estado IN ('PROCESANDO', 'COMPLETADO', 'FALLIDO')),
    id_confirmacion TEXT,
    creado_en       TEXT    NOT NULL,
    actualizado_en  TEXT    NOT NULL,
    UNIQUE (id_partner, id_ciclo)
);

CREATE TABLE transaccion_pago (
    id_transaccion BLOB    PRIMARY KEY,
    id_pago        BLOB    NOT NULL REFERENCES pago (id_pago),
    tipo           TEXT    NOT NULL,
    valor_menor    INTEGER NOT NULL,
    moneda         TEXT    NOT NULL,
    porcentaje     INTEGER NOT NULL,
    creada_en      TEXT    NOT NULL
);
CREATE INDEX transaccion_pago_pago_idx ON transaccion_pago (id_pago);
