#!/bin/bash
# The two database roles of docs/security.md "Database roles", and the database, owned by the first:
#   alm_owner  owns the schema; only `manage.py migrate` connects as it (DATABASE_MIGRATE_URL)
#   alm_app    web, worker and beat (DATABASE_URL); migrate grants it DML on the tables afterwards
# Neither is a superuser. docker-compose.yml mounts this into /docker-entrypoint-initdb.d/, so the postgres
# image runs it once, when it initialises an empty data directory. For an existing installation see
# docs/upgrading.md. Names can be changed with ALM_DB_NAME, ALM_DB_OWNER and ALM_DB_APP.
set -euo pipefail

db="${ALM_DB_NAME:-alm}"
owner="${ALM_DB_OWNER:-alm_owner}"
app="${ALM_DB_APP:-alm_app}"
: "${ALM_DB_OWNER_PASSWORD:?set ALM_DB_OWNER_PASSWORD}" "${ALM_DB_APP_PASSWORD:?set ALM_DB_APP_PASSWORD}"

run() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" "$@" \
    --set=db="$db" --set=owner="$owner" --set=app="$app" \
    --set=owner_password="$ALM_DB_OWNER_PASSWORD" --set=app_password="$ALM_DB_APP_PASSWORD"
}

run --dbname postgres <<'SQL'
CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'owner_password';
CREATE ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT PASSWORD :'app_password';
CREATE DATABASE :"db" OWNER :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"owner";
GRANT CONNECT ON DATABASE :"db" TO :"app";
SQL

run --dbname "$db" <<'SQL'
ALTER SCHEMA public OWNER TO :"owner";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SQL
