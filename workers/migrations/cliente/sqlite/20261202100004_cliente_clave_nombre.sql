-- The name as lists sort and search it (SQLite: the embedded mode); same shape as PostgreSQL.
ALTER TABLE cliente ADD COLUMN clave_nombre TEXT NOT NULL DEFAULT '';
UPDATE cliente SET clave_nombre = lower(nombre);
CREATE INDEX cliente_clave_nombre_idx ON cliente (clave_nombre, id);
CREATE INDEX cliente_fecha_registro_idx ON cliente (fecha_registro, id);
