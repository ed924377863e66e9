-- The payout's amount as columns, so the list filters and sums it in SQL (SQLite: the embedded
-- mode). Same shape as PostgreSQL; SQLite cannot add NOT NULL columns without a default, so the
-- defaults are filled from each row's request right away.
ALTER TABLE vista_pago ADD COLUMN monto_menor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vista_pago ADD COLUMN moneda TEXT NOT NULL DEFAULT '';
ALTER TABLE vista_pago ADD COLUMN escala INTEGER NOT NULL DEFAULT 100;
UPDATE vista_pago SET
    monto_menor = json_extract(solicitud, '$.monto.valor_menor'),
    moneda = json_extract(solicitud, '$.monto.moneda'),
    escala = CASE WHEN json_extract(solicitud, '$.monto.moneda') = 'CLP' THEN 1 ELSE 100 END;
CREATE INDEX vista_pago_partner_idx ON vista_pago (id_partner, fecha_creacion DESC);
