-- The marca service's own data (SQLite: the embedded mode). Same shape as PostgreSQL.
CREATE TABLE marca (
    id_marca                        BLOB    PRIMARY KEY,
    nombre                          TEXT    NOT NULL,
    activa                          BOOLEAN NOT NULL,
    presupuesto_disponible_centavos INTEGER NOT NULL CHECK (presupuesto_disponible_centavos >= 0)
);

CREATE TABLE reserva_presupuesto (
    id_reserva     BLOB    PRIMARY KEY,
    id_campana     BLOB    NOT NULL UNIQUE,
    id_marca       BLOB    NOT NULL REFERENCES marca (id_marca),
    monto_centavos INTEGER NOT NULL CHECK (monto_centavos > 0),
    estado         TEXT    NOT NULL CHECK (estado IN ('reservada', 'liberada')),
    creada_en      TEXT    NOT NULL,
    liberada_en    TEXT
);
