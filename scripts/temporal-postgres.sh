#!/usr/bin/env bash
# The Temporal server production runs (v1.29.1 on PostgreSQL), on this
# machine without Docker. See deploy/README.md, "Running the Temporal server
# on PostgreSQL without Docker".
#
#   scripts/temporal-postgres.sh install   go install the server and temporal-sql-tool v1.29.1 if missing; prints their paths
#   scripts/temporal-postgres.sh setup     roles, databases and schemas on the local PostgreSQL (idempotent)
#   scripts/temporal-postgres.sh start     starts the server in the background; prints the frontend address
#   scripts/temporal-postgres.sh stop      SIGTERM, then SIGKILL after TEMPORAL_PG_STOP_TIMEOUT
#   scripts/temporal-postgres.sh restart
#   scripts/temporal-postgres.sh status    exit 0 when running, 3 when not
#
# Results (paths, the address) go to stdout, progress to stderr, so that
# `addr=$(scripts/temporal-postgres.sh start)` works.
#
# Environment (defaults in brackets):
#   TEMPORAL_PG_PORT           frontend gRPC port [7243]; the other ports are derived from it:
#                              history +1, matching +2, worker +6, frontend HTTP +10, and
#                              membership -300 +0/+1/+2/+6. Two instances need bases >= 20 apart.
#   TEMPORAL_PG_DB_PREFIX      databases <prefix> and <prefix>_visibility, owned by role <prefix> [temporal]
#   TEMPORAL_PG_STATE_DIR      rendered config, pid file and log [<repo>/.run/temporal-postgres,
#                              or .run/temporal-postgres-<prefix> for another prefix]
#   TEMPORAL_PG_HOST, TEMPORAL_PG_DB_PORT   PostgreSQL [127.0.0.1, 5432]
#   TEMPORAL_PG_ADMIN_USER     superuser that creates the role and databases [postgres]
#                              (a password for it: PGPASSWORD, read by psql itself)
#   TEMPORAL_PG_DB_PASSWORD    password of role <prefix> [none: trust authentication]; written
#                              only to the rendered config (mode 600), never logged
#   TEMPORAL_PG_NAMESPACE_RETENTION  retention of namespace default when created [72h]
#   TEMPORAL_PG_MAX_CONNS, TEMPORAL_PG_VISIBILITY_MAX_CONNS  connection pools, per service [20, 10]:
#                              the process holds ~40 connections idle and more under load
#   TEMPORAL_PG_LOG_LEVEL      server log level [info]
#   TEMPORAL_PG_START_TIMEOUT, TEMPORAL_PG_STOP_TIMEOUT  seconds [120, 30]
#
# Mutual TLS on the frontend (off unless TEMPORAL_PG_TLS_CERT is set; then all of these but
# the last two are required; PEM files, read by the server at start):
#   TEMPORAL_PG_TLS_CERT, TEMPORAL_PG_TLS_KEY  the frontend's certificate and key: it then serves
#                              TLS only, and refuses every client without a certificate signed by
#                              TEMPORAL_PG_TLS_CLIENT_CA (requireClientAuth)
#   TEMPORAL_PG_TLS_CA         the CA the frontend's certificate chains to, which the server's own
#                              clients below check it against
#   TEMPORAL_PG_TLS_CLIENT_CA  the CA of the clients' certificates [TEMPORAL_PG_TLS_CA]
#   TEMPORAL_PG_TLS_CLIENT_CERT, TEMPORAL_PG_TLS_CLIENT_KEY  a client certificate (of that CA) for the
#                              server's system worker, which calls the frontend, and for this script's
#                              temporal CLI calls (start, status)
#   TEMPORAL_PG_TLS_SERVER_NAME  the name in the frontend's certificate those check [localhost]
# The services behind the frontend (history, matching, worker) stay plaintext on 127.0.0.1.
# The product then connects with temporal.tls.ca_file, cert_file and key_file (deploy/README.md).
set -euo pipefail

version=v1.29.1
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

port=${TEMPORAL_PG_PORT:-7243}
prefix=${TEMPORAL_PG_DB_PREFIX:-temporal}
if [ "$prefix" = temporal ]; then
  state=${TEMPORAL_PG_STATE_DIR:-$repo/.run/temporal-postgres}
else
  state=${TEMPORAL_PG_STATE_DIR:-$repo/.run/temporal-postgres-$prefix}
fi
db_host=${TEMPORAL_PG_HOST:-127.0.0.1}
db_port=${TEMPORAL_PG_DB_PORT:-5432}
admin_user=${TEMPORAL_PG_ADMIN_USER:-postgres}
db_password=${TEMPORAL_PG_DB_PASSWORD:-}
retention=${TEMPORAL_PG_NAMESPACE_RETENTION:-72h}
log_level=${TEMPORAL_PG_LOG_LEVEL:-info}
max_conns=${TEMPORAL_PG_MAX_CONNS:-20}
vis_max_conns=${TEMPORAL_PG_VISIBILITY_MAX_CONNS:-10}
start_timeout=${TEMPORAL_PG_START_TIMEOUT:-120}
stop_timeout=${TEMPORAL_PG_STOP_TIMEOUT:-30}

db_user=$prefix
db_main=$prefix
db_vis=${prefix}_visibility
namespace=default
template=$repo/deploy/temporal/config/development-postgres.yaml
# Loaded over the first by the server (--zone tls) when TLS is on.
tls_template=$repo/deploy/temporal/config/development-postgres_tls.yaml
tls_zone=tls
dynamic_config=$repo/deploy/temporal/dynamicconfig/tsbulk.yaml
config_env=development-postgres
config_dir=$state/config
pid_file=$state/temporal.pid
log_file=$state/temporal.log
address=127.0.0.1:$port

say() { echo "temporal-postgres: $*" >&2; }
die() { echo "temporal-postgres: error: $*" >&2; exit 1; }

# The membership ports (port-300 .. port-294) are stored in a smallint
# column of the cluster_membership table: above 32767 the server exits at
# start with "out of range for type smallint".
[[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1324 ] && [ "$port" -le 33061 ] ||
  die "TEMPORAL_PG_PORT must be a port number between 1324 and 33061, so that its membership ports (TEMPORAL_PG_PORT-300 and up) fit the server's smallint column (got '$port')"
[[ $prefix =~ ^[a-z_][a-z0-9_]{0,40}$ ]] ||
  die "TEMPORAL_PG_DB_PREFIX must be a lower-case SQL identifier (letters, digits, _; got '$prefix')"
[[ $db_port =~ ^[0-9]+$ ]] || die "TEMPORAL_PG_DB_PORT must be a port number (got '$db_port')"
for t in "$start_timeout" "$stop_timeout"; do
  [[ $t =~ ^[0-9]+$ ]] || die "TEMPORAL_PG_START_TIMEOUT and TEMPORAL_PG_STOP_TIMEOUT are seconds (got '$t')"
done
for t in "$max_conns" "$vis_max_conns"; do
  [[ $t =~ ^[1-9][0-9]*$ ]] || die "TEMPORAL_PG_MAX_CONNS and TEMPORAL_PG_VISIBILITY_MAX_CONNS are positive numbers (got '$t')"
done

# TLS settings (TEMPORAL_PG_TLS_*), checked and made absolute (the server
# runs with --root /) by load_tls, for the commands that start or call the
# server.
tls=
[ -z "${TEMPORAL_PG_TLS_CERT:-}" ] || tls=1
load_tls() {
  [ -n "$tls" ] || return 0
  tls_cert=$TEMPORAL_PG_TLS_CERT
  tls_key=${TEMPORAL_PG_TLS_KEY:-}
  tls_ca=${TEMPORAL_PG_TLS_CA:-}
  tls_client_ca=${TEMPORAL_PG_TLS_CLIENT_CA:-$tls_ca}
  tls_client_cert=${TEMPORAL_PG_TLS_CLIENT_CERT:-}
  tls_client_key=${TEMPORAL_PG_TLS_CLIENT_KEY:-}
  tls_server_name=${TEMPORAL_PG_TLS_SERVER_NAME:-localhost}
  local v name
  for v in tls_cert tls_key tls_ca tls_client_ca tls_client_cert tls_client_key; do
    name=TEMPORAL_PG_${v^^}
    [ -n "${!v}" ] || die "$name is required with TEMPORAL_PG_TLS_CERT (mutual TLS on the frontend; see the header of $0)"
    [ -r "${!v}" ] || die "$name: cannot read ${!v}"
    printf -v "$v" '%s' "$(realpath -e -- "${!v}")"
  done
  # The script's temporal CLI calls (start, status, search attributes)
  # present the client certificate, through Temporal's environment
  # configuration, as every Temporal tool reads it.
  export TEMPORAL_TLS_CLIENT_CERT_PATH=$tls_client_cert TEMPORAL_TLS_CLIENT_KEY_PATH=$tls_client_key
  export TEMPORAL_TLS_SERVER_CA_CERT_PATH=$tls_ca TEMPORAL_TLS_SERVER_NAME=$tls_server_name
}

# name:port of every port the server listens on.
ports() {
  echo "frontend-grpc:$port history-grpc:$((port + 1)) matching-grpc:$((port + 2)) worker-grpc:$((port + 6))" \
    "frontend-http:$((port + 10)) frontend-membership:$((port - 300)) history-membership:$((port - 299))" \
    "matching-membership:$((port - 298)) worker-membership:$((port - 294))"
}

gobin() {
  command -v go >/dev/null || die "go is not on PATH (needed to install the Temporal server)"
  local b
  b="$(go env GOBIN)"
  [ -n "$b" ] || b="$(go env GOPATH)/bin"
  echo "$b"
}

# is_build FILE PACKAGE: FILE is PACKAGE built from go.temporal.io/server $version.
is_build() {
  [ -x "$1" ] || return 1
  local info
  info="$(go version -m "$1" 2>/dev/null)" || return 1
  grep -qE "^[[:space:]]+path[[:space:]]+$2\$" <<<"$info" &&
    grep -qE "^[[:space:]]+mod[[:space:]]+go.temporal.io/server[[:space:]]+$version([[:space:]]|\$)" <<<"$info"
}

# `go install .../cmd/server` names the binary server, and `.../cmd/tools/sql`
# names it sql (temporal-sql-tool in Temporal's images). TEMPORAL_PG_SERVER
# and TEMPORAL_PG_SQL_TOOL name other builds of the same version.
server_bin() { echo "${TEMPORAL_PG_SERVER:-$(gobin)/server}"; }
sql_tool_bin() { echo "${TEMPORAL_PG_SQL_TOOL:-$(gobin)/sql}"; }

need_binaries() {
  is_build "$(server_bin)" go.temporal.io/server/cmd/server ||
    die "the Temporal server $version is not installed at $(server_bin): run scripts/temporal-postgres.sh install"
  is_build "$(sql_tool_bin)" go.temporal.io/server/cmd/tools/sql ||
    die "temporal-sql-tool $version is not installed at $(sql_tool_bin): run scripts/temporal-postgres.sh install"
}

# The temporal CLI (v1.5.1, the one the dev server and the tests use).
temporal_cli() {
  "$repo/scripts/ensure-temporal-cli.sh" || die "the Temporal CLI is needed: scripts/ensure-temporal-cli.sh failed"
}

cmd_install() {
  local b pkg
  b="$(gobin)"
  for pkg in go.temporal.io/server/cmd/server go.temporal.io/server/cmd/tools/sql; do
    local bin="$b/${pkg##*/}"
    if is_build "$bin" "$pkg"; then
      say "$pkg $version already installed"
    else
      say "installing $pkg@$version (go install; several minutes the first time)..."
      # From outside the module, so that its go.mod and go.sum stay as they are.
      (cd / && GOFLAGS=-buildvcs=false go install "$pkg@$version") >&2 ||
        die "go install $pkg@$version failed"
      is_build "$bin" "$pkg" || die "go install $pkg@$version did not produce $bin"
    fi
    echo "$bin"
  done
}

# The schema files ship in the module source; download it into the module
# cache if it is not there (outside this module: go.sum is not touched).
schema_dir() {
  local dir
  dir="$(cd / && GOFLAGS= go mod download -json "go.temporal.io/server@$version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || true
  [ -n "$dir" ] && [ -d "$dir/schema/postgresql/v12" ] ||
    die "cannot find go.temporal.io/server@$version's schema/postgresql/v12 (go mod download failed?)"
  echo "$dir/schema/postgresql/v12"
}

pg_ready() { (exec 3<>"/dev/tcp/$db_host/$db_port") 2>/dev/null; }

need_postgres() {
  command -v psql >/dev/null || die "psql is not on PATH (apt-get install postgresql-client)"
  pg_ready || die "PostgreSQL is not reachable at $db_host:$db_port (scripts/ensure-postgres.sh --start starts the local cluster)"
}

admin_psql() {
  psql -X -q -At -v ON_ERROR_STOP=1 -h "$db_host" -p "$db_port" -U "$admin_user" -d postgres "$@"
}

# sql_tool DATABASE ARGS...: temporal-sql-tool on one of the instance's
# databases, as the owner role (the password through the environment, not
# the command line).
sql_tool() {
  local db=$1
  shift
  SQL_PASSWORD="$db_password" "$(sql_tool_bin)" --plugin postgres12 --endpoint "$db_host" --port "$db_port" \
    --user "$db_user" --database "$db" "$@"
}

cmd_setup() {
  need_binaries
  need_postgres
  local schema
  schema="$(schema_dir)"
  # Role and databases, as deploy/postgres/initdb does for compose: the role
  # owns both databases, is no superuser and cannot create databases.
  admin_psql --set role="$db_user" --set password="$db_password" >/dev/null <<SQL ||
SELECT count(*) > 0 AS role_exists FROM pg_roles WHERE rolname = :'role' \gset
\if :role_exists
\else
CREATE ROLE "$db_user" LOGIN;
\endif
SELECT :'password' <> '' AS set_password \gset
\if :set_password
ALTER ROLE "$db_user" PASSWORD :'password';
\endif
SQL
    die "cannot create role $db_user as $admin_user on $db_host:$db_port"
  local db
  for db in "$db_main" "$db_vis"; do
    if [ "$(admin_psql -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ]; then
      say "database $db exists"
    else
      say "creating database $db (owner $db_user)"
      admin_psql -c "CREATE DATABASE \"$db\" OWNER \"$db_user\"" -c "REVOKE ALL ON DATABASE \"$db\" FROM PUBLIC" ||
        die "cannot create database $db"
    fi
  done
  # The schema steps of temporalio/auto-setup: setup-schema -v 0.0 (the
  # schema_version tables) on a new database, then update-schema to the
  # newest version the server release ships (a no-op when already there).
  # The tool logs every statement: to setup.log, shown when it fails.
  local kind setup_log=$state/setup.log
  mkdir -p "$state"
  for kind in temporal visibility; do
    db=$db_main
    [ "$kind" = visibility ] && db=$db_vis
    if [ -z "$(admin_psql -d "$db" -c "SELECT to_regclass('public.schema_version')")" ]; then
      say "loading the $kind schema into $db"
      sql_tool "$db" setup-schema -v 0.0 >>"$setup_log" 2>&1 ||
        { tail -n 20 "$setup_log" >&2; die "temporal-sql-tool setup-schema on $db failed (log: $setup_log)"; }
    fi
    sql_tool "$db" update-schema -d "$schema/$kind/versioned" >>"$setup_log" 2>&1 ||
      { tail -n 20 "$setup_log" >&2; die "temporal-sql-tool update-schema on $db failed (log: $setup_log)"; }
    say "$db: schema version $(admin_psql -d "$db" -c "SELECT curr_version FROM schema_version")"
  done
}

running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid="$(cat "$pid_file")"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # Only our server: the pid file may be stale and its pid reused.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $config_dir " || return 1
  echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# yaml_dq VALUE: VALUE for a YAML double-quoted string.
yaml_dq() {
  local v=${1//\\/\\\\}
  printf '%s' "${v//\"/\\\"}"
}

# render TEMPLATE OUTPUT: TEMPLATE with the vars of render_config replaced.
render() {
  local tpl name value
  [ -f "$1" ] || die "missing $1"
  tpl="$(<"$1")"
  for name in "${!vars[@]}"; do
    value=${vars[$name]}
    tpl=${tpl//"\${$name}"/"$value"}
  done
  if grep -qE '\$\{[A-Z_]+\}' <<<"$tpl"; then
    die "$1 has placeholders the script does not know: $(grep -oE '\$\{[A-Z_]+\}' <<<"$tpl" | sort -u | tr '\n' ' ')"
  fi
  (umask 077 && printf '%s\n' "$tpl" >"$2")
}

render_config() {
  [ -f "$dynamic_config" ] || die "missing $dynamic_config"
  local -A vars=(
    [LOG_LEVEL]=$log_level [DB_NAME]=$db_main [VISIBILITY_DB_NAME]=$db_vis [DB_HOST]=$db_host
    [DB_PORT]=$db_port [DB_USER]=$db_user [DYNAMIC_CONFIG_FILE]=$dynamic_config
    [MAX_CONNS]=$max_conns [VISIBILITY_MAX_CONNS]=$vis_max_conns
    [FRONTEND_GRPC_PORT]=$port [HISTORY_GRPC_PORT]=$((port + 1)) [MATCHING_GRPC_PORT]=$((port + 2))
    [WORKER_GRPC_PORT]=$((port + 6)) [FRONTEND_HTTP_PORT]=$((port + 10))
    [FRONTEND_MEMBERSHIP_PORT]=$((port - 300)) [HISTORY_MEMBERSHIP_PORT]=$((port - 299))
    [MATCHING_MEMBERSHIP_PORT]=$((port - 298)) [WORKER_MEMBERSHIP_PORT]=$((port - 294))
  )
  vars[DB_PASSWORD]=$(yaml_dq "$db_password")
  mkdir -p "$config_dir"
  render "$template" "$config_dir/$config_env.yaml"
  local tls_file=$config_dir/${config_env}_$tls_zone.yaml
  rm -f "$tls_file"
  if [ -n "$tls" ]; then
    vars=(
      [TLS_SERVER_CERT]=$(yaml_dq "$tls_cert") [TLS_SERVER_KEY]=$(yaml_dq "$tls_key")
      [TLS_CLIENT_CA]=$(yaml_dq "$tls_client_ca") [TLS_CA]=$(yaml_dq "$tls_ca")
      [TLS_CLIENT_CERT]=$(yaml_dq "$tls_client_cert") [TLS_CLIENT_KEY]=$(yaml_dq "$tls_client_key")
      [TLS_SERVER_NAME]=$(yaml_dq "$tls_server_name")
    )
    render "$tls_template" "$tls_file"
  fi
}

# ready: the frontend serves and namespace default is usable through it.
namespace_ready() {
  "$1" workflow list --address "$address" --namespace "$namespace" --limit 1 >/dev/null 2>&1
}

# The product's custom search attributes: scripts/search-attributes.sh
# registers them (idempotent) when the tree has it. The dev server reads them
# fresh on every request; this server caches them for up to 60 s, so wait
# until a visibility query on each one is accepted.
search_attributes() {
  local cli=$1 sa=$repo/scripts/search-attributes.sh
  [ -x "$sa" ] || return 0
  TEMPORAL_CLI="$cli" "$sa" "$address" "$namespace" >&2 || die "scripts/search-attributes.sh $address $namespace failed"
  local name type value deadline=$((SECONDS + 90))
  "$cli" operator search-attribute list --address "$address" --namespace "$namespace" -o json |
    sed -n '/"customAttributes"/,/}/s/^[[:space:]]*"\([A-Za-z0-9_]*\)": "INDEXED_VALUE_TYPE_\([A-Z_]*\)".*/\1 \2/p' |
    while read -r name type; do
      case $type in
      INT | DOUBLE) value=0 ;;
      BOOL) value=true ;;
      DATETIME) value="'2000-01-01T00:00:00Z'" ;;
      *) value="'-'" ;;
      esac
      until "$cli" workflow list --address "$address" --namespace "$namespace" --limit 1 \
        --query "$name = $value" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "search attribute $name is registered but not usable after 90 s"
        sleep 2
      done
    done
}

cmd_start() {
  need_binaries
  need_postgres
  load_tls
  local cli pid
  cli="$(temporal_cli)"
  if pid="$(running_pid)"; then
    say "already running (pid $pid, state $state)"
  else
    [ -z "$(admin_psql -c "SELECT 1 FROM pg_database WHERE datname = '$db_vis'")" ] &&
      die "database $db_vis does not exist: run scripts/temporal-postgres.sh setup first"
    local p
    for p in $(ports); do
      port_busy "${p#*:}" && die "port ${p#*:} (${p%%:*}) on 127.0.0.1 is in use: stop what listens there, or choose other ports with TEMPORAL_PG_PORT"
    done
    render_config
    echo "=== $(date -u +%FT%TZ) start: $address${tls:+ (mutual TLS)}, databases $db_main and $db_vis" >>"$log_file"
    say "starting the Temporal server $version on $address${tls:+ with mutual TLS} (log: $log_file)"
    # Its own session, so that Ctrl-C in the shell that started it (or make)
    # does not stop it; `stop` does.
    local zone=()
    [ -z "$tls" ] || zone=(--zone "$tls_zone")
    setsid "$(server_bin)" --root / --config "$config_dir" --env "$config_env" "${zone[@]}" --allow-no-auth start \
      </dev/null >>"$log_file" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"
  fi
  local deadline=$((SECONDS + start_timeout)) created=
  while :; do
    kill -0 "$pid" 2>/dev/null || {
      rm -f "$pid_file"
      tail -n 20 "$log_file" >&2
      die "the server exited during start (the end of $log_file is above)"
    }
    if "$cli" operator cluster health --address "$address" >/dev/null 2>&1; then
      if namespace_ready "$cli"; then
        break
      fi
      if [ -z "$created" ] && ! "$cli" operator namespace describe --address "$address" --namespace "$namespace" >/dev/null 2>&1; then
        say "registering namespace $namespace (retention $retention)"
        "$cli" operator namespace create --address "$address" --namespace "$namespace" --retention "$retention" >&2 ||
          die "temporal operator namespace create $namespace failed"
        created=1
      fi
    fi
    [ "$SECONDS" -lt "$deadline" ] ||
      die "the server (pid $pid) did not serve namespace $namespace on $address within ${start_timeout}s; see $log_file"
    sleep 1
  done
  search_attributes "$cli"
  say "ready: frontend $address, namespace $namespace, pid $pid"
  echo "$address"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$pid_file"
    say "not running (state $state)"
    return 0
  fi
  say "stopping the server (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + stop_timeout))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    say "still running after ${stop_timeout}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$pid_file"
  echo "=== $(date -u +%FT%TZ) stopped" >>"$log_file"
  say "stopped"
}

cmd_status() {
  local pid cli health=unknown ns=missing
  load_tls
  if ! pid="$(running_pid)"; then
    echo "stopped (state $state, frontend would be $address)"
    return 3
  fi
  cli="$(temporal_cli)"
  if "$cli" operator cluster health --address "$address" >/dev/null 2>&1; then health=serving; else health="not serving"; fi
  namespace_ready "$cli" && ns=ready
  echo "running: pid $pid, frontend $address${tls:+ (mutual TLS)} ($health), namespace $namespace $ns"
  echo "databases $db_main, $db_vis on $db_host:$db_port (role $db_user); state $state; log $log_file"
}

[ $# -eq 1 ] || die "usage: $0 install|setup|start|stop|restart|status"
case "$1" in
install) cmd_install ;;
setup) cmd_setup ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_stop && cmd_start ;;
status) cmd_status ;;
*) die "unknown command '$1'; usage: $0 install|setup|start|stop|restart|status" ;;
esac
