#!/usr/bin/env bash
# PostgreSQL first-start initialisation for docker-compose.yml (mounted into
# /docker-entrypoint-initdb.d/, so it runs once, when the data volume is empty).
#
# One database per service, each owned by a login role of the same name, and nobody else may
# connect to it: the orchestrator's saga log and view, and each participant's own data, stay apart.
# The roles' password comes from ALPES_DB_PASSWORD (set by docker-compose.yml; it goes into the
# services' database URLs, so use URL-safe characters).
set -e

if [ -z "${ALPES_DB_PASSWORD:-}" ]; then
    echo "init-databases.sh: ALPES_DB_PASSWORD is not set" >&2
    exit 1
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    --set=pw="$ALPES_DB_PASSWORD" <<'SQL'
CREATE ROLE orchestrator LOGIN PASSWORD :'pw';
CREATE DATABASE orchestrator OWNER orchestrator;
REVOKE ALL ON DATABASE orchestrator FROM PUBLIC;

CREATE ROLE marca LOGIN PASSWORD :'pw';
CREATE DATABASE marca OWNER marca;
REVOKE ALL ON DATABASE marca FROM PUBLIC;

CREATE ROLE influencer LOGIN PASSWORD :'pw';
CREATE DATABASE influencer OWNER influencer;
REVOKE ALL ON DATABASE influencer FROM PUBLIC;

CREATE ROLE tracking LOGIN PASSWORD :'pw';
CREATE DATABASE tracking OWNER tracking;
REVOKE ALL ON DATABASE tracking FROM PUBLIC;

CREATE ROLE cliente LOGIN PASSWORD :'pw';
CREATE DATABASE cliente OWNER cliente;
REVOKE ALL ON DATABASE cliente FROM PUBLIC;

CREATE ROLE pagos LOGIN PASSWORD :'pw';
CREATE DATABASE pagos OWNER pagos;
REVOKE ALL ON DATABASE pagos FROM PUBLIC;

CREATE ROLE proveedor LOGIN PASSWORD :'pw';
CREATE DATABASE proveedor OWNER proveedor;
REVOKE ALL ON DATABASE proveedor FROM PUBLIC;
SQL

echo "init-databases.sh: created databases orchestrator, marca, influencer, tracking, cliente, pagos, proveedor"
