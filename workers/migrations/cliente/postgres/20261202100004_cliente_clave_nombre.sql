-- The name as lists sort and search it: lower case without accents ("Álvaro" sorts and is
-- found as "alvaro"), computed by the service when it writes the client. Clients written
-- before this column get their lower-case name.
ALTER TABLE cliente ADD COLUMN clave_nombre TEXT;
UPDATE cliente SET clave_nombre = lower(nombre);
ALTER TABLE cliente ALTER COLUMN clave_nombre SET NOT NULL;
CREATE INDEX cliente_clave_nombre_idx ON cliente (clave_nombre, id);
CREATE INDEX cliente_fecha_registro_idx ON cliente (fecha_registro, id);
