-- The payout's amount as columns, so the list filters and sums it in SQL: minor units, the
-- currency, and how many minor units make one unit (100, or 1 for CLP).
ALTER TABLE vista_pago ADD COLUMN monto_menor BIGINT;
ALTER TABLE vista_pago ADD COLUMN moneda TEXT;
ALTER TABLE vista_pago ADD COLUMN escala BIGINT;
UPDATE vista_pago SET
    monto_menor = (solicitud -> 'monto' ->> 'valor_menor')::BIGINT,
    moneda = solicitud -> 'monto' ->> 'moneda',
    escala = CASE WHEN solicitud -> 'monto' ->> 'moneda' = 'CLP' THEN 1 ELSE 100 END;
ALTER TABLE vista_pago ALTER COLUMN monto_menor SET NOT NULL;
ALTER TABLE vista_pago ALTER COLUMN moneda SET NOT NULL;
ALTER TABLE vista_pago ALTER COLUMN escala SET NOT NULL;
CREATE INDEX vista_pago_partner_idx ON vista_pago (id_partner, fecha_creacion DESC);
