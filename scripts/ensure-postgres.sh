#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432; starts the local cluster
# when it is installed but stopped. Says what to do when it cannot.
set -uo pipefail
host=${PGHOST:-127.0.0.1}
port=${PGPORT:-5432}
ready() { pg_isready -q -h "$host" -p "$port" 2>/dev/null || (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
if ready; then exit 0; fi
if [ "${1:-}" = "--start" ] && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "PostgreSQL is not running; starting the local cluster..." >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >&2 || true
  for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
fi
cat >&2 <<MSG
PostgreSQL is not reachable at $host:$port.

The product keeps bulk changes, device changes, callbacks and its audit log in
PostgreSQL, so it needs a server it can reach (trust or password auth).
  - On this kind of machine start it with:
      pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start
  - Or point the product elsewhere with TSBULK_DATABASE_URL
    (for the tests: TSBULK_TEST_DATABASE_URL).
MSG
exit 1
