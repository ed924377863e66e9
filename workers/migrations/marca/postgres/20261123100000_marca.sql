-- The marca service's own data: brands with their available budget, and budget reservations.
CREATE TABLE marca (
    id_marca                        UUID    PRIMARY KEY,
    nombre                          TEXT    NOT NULL,
    activa                          BOOLEAN NOT NULL,
    presupuesto_disponible_centavos BIGINT  NOT NULL CHECK (presupuesto_disponible_centavos >= 0)
);

-- One reservation per campaign; released by the compensation.
CREATE TABLE reserva_presupuesto (
    id_reserva     UUID        PRIMARY KEY,
    id_campana     UUID        NOT NULL UNIQUE,
    id_marca       UUID        NOT NULL REFERENCES marca (id_marca),
    monto_centavos BIGINT      NOT NULL CHECK (monto_centavos > 0),
    estado         TEXT        NOT NULL CHECK (estado IN ('reservada', 'liberada')),
    creada_en      TIMESTAMPTZ NOT NULL,
    liberada_en    TIMESTAMPTZ
);
