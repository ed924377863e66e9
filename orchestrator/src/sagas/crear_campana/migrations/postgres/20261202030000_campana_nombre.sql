-- The campaign's name as a column, so the list searches it in SQL.
ALTER TABLE campana ADD COLUMN nombre TEXT;
UPDATE campana SET nombre = solicitud ->> 'nombre';
ALTER TABLE campana ALTER COLUMN nombre SET NOT NULL;
