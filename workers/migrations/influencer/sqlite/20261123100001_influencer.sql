-- The influencer service's own data (SQLite: the embedded mode). Same shape as PostgreSQL.
CREATE TABLE plataforma (
    nombre             TEXT    PRIMARY KEY,
    seguidores_minimos INTEGER NOT NULL CHECK (seguidores_minimos >= 0)
);
INSERT INTO plataforma (nombre, seguidores_minimos) VALUES
    ('instagram', 10000), ('tiktok', 10000), ('youtube', 5000), ('twitch', 2000), ('x', 10000);

CREATE TABLE influencer (
    id_influencer BLOB PRIMARY KEY,
    clave         TEXT NOT NULL UNIQUE,
    nombre        TEXT NOT NULL,
    plataforma    TEXT NOT NULL
);

CREATE TABLE reserva_influencer (
    id_reserva    BLOB PRIMARY KEY,
    id_campana    BLOB NOT NULL,
    id_influencer BLOB NOT NULL REFERENCES influencer (id_influencer),
    fecha_inicio  TEXT NOT NULL,
    fecha_fin     TEXT NOT NULL,
    estado        TEXT NOT NULL CHECK (estado IN ('reservada', 'liberada')),
    UNIQUE (id_campana, id_influencer)
);
CREATE INDEX reserva_influencer_activa_idx ON reserva_influencer (id_influencer) WHERE estado = 'reservada';
