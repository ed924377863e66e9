-- The influencer service's own data: the minimum audience per platform, the influencers it
-- has booked, and their bookings per campaign window.
CREATE TABLE plataforma (
    nombre             TEXT   PRIMARY KEY,  -- lower case
    seguidores_minimos BIGINT NOT NULL CHECK (seguidores_minimos >= 0)
);
INSERT INTO plataforma (nombre, seguidores_minimos) VALUES
    ('instagram', 10000), ('tiktok', 10000), ('youtube', 5000), ('twitch', 2000), ('x', 10000);

-- An influencer is known by name and platform (the public API gives no id); the key is
-- normalized (trimmed, lower case).
CREATE TABLE influencer (
    id_influencer UUID PRIMARY KEY,
    clave         TEXT NOT NULL UNIQUE,
    nombre        TEXT NOT NULL,
    plataforma    TEXT NOT NULL
);

CREATE TABLE reserva_influencer (
    id_reserva    UUID      PRIMARY KEY,
    id_campana    UUID      NOT NULL,
    id_influencer UUID      NOT NULL REFERENCES influencer (id_influencer),
    fecha_inicio  TIMESTAMP NOT NULL,
    fecha_fin     TIMESTAMP NOT NULL,
    estado        TEXT      NOT NULL CHECK (estado IN ('reservada', 'liberada')),
    UNIQUE (id_campana, id_influencer)
);
CREATE INDEX reserva_influencer_activa_idx ON reserva_influencer (id_influencer) WHERE estado = 'reservada';
