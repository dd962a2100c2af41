#!/usr/bin/env bash
# Creates the roles and databases of the compose stack. The postgres image
# runs the scripts of /docker-entrypoint-initdb.d once, when the server
# starts on an empty data volume (`docker compose down -v` to start over):
#
#   role temporal  owns temporal and temporal_visibility (the Temporal
#                  server; compose's one-shot temporal-schema loads their
#                  schemas)
#   role tsbulk    owns tsbulk (the product; compose's one-shot migrate
#                  applies its migrations)
#
# Neither role is a superuser or may create databases, and each database
# accepts connections from its owner only. The passwords come from the
# environment of the postgresql service (TEMPORAL_DB_PASSWORD,
# TSBULK_DB_PASSWORD) and must match what temporal and TSBULK_DATABASE_URL
# use.
set -euo pipefail

: "${TEMPORAL_DB_PASSWORD:?set TEMPORAL_DB_PASSWORD in the postgresql service}"
: "${TSBULK_DB_PASSWORD:?set TSBULK_DB_PASSWORD in the postgresql service}"

# psql variables (:'name') quote the passwords as SQL literals. CREATE
# DATABASE cannot run in a transaction, so each statement runs on its own.
psql -v ON_ERROR_STOP=1 --no-psqlrc \
	--username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
	--set temporal_password="$TEMPORAL_DB_PASSWORD" \
	--set tsbulk_password="$TSBULK_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
REVOKE ALL ON DATABASE temporal FROM PUBLIC;
REVOKE ALL ON DATABASE temporal_visibility FROM PUBLIC;

CREATE ROLE tsbulk LOGIN PASSWORD :'tsbulk_password';
CREATE DATABASE tsbulk OWNER tsbulk;
REVOKE ALL ON DATABASE tsbulk FROM PUBLIC;
SQL
