-- The campaign's name as a column, so the list searches it in SQL (SQLite: the embedded mode).
ALTER TABLE campana ADD COLUMN nombre TEXT NOT NULL DEFAULT '';
UPDATE campana SET nombre = json_extract(solicitud, '$.nombre');
