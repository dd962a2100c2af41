#!/usr/bin/env bash
# Makes sure promtool and amtool, at the versions of the Prometheus and
# Alertmanager images docker-compose.yml runs, are installed, and prints
# their paths (promtool first). They are built with `go install`, outside
# this module's requirements; the first build of promtool takes several
# minutes. harness/monitoring's tests run them (make test).
set -euo pipefail
# Prometheus v3.16.0 and Alertmanager v0.35.0: the Go module versions of
# the releases docker-compose.yml pins (prom/prometheus:v3.16.0,
# prom/alertmanager:v0.35.0).
prometheus_module=v0.316.0
prometheus_release=3.16.0
alertmanager_release=0.35.0
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"

# installed NAME RELEASE: the binary in $gobin reports that release.
installed() {
  [ -x "$gobin/$1" ] && "$gobin/$1" --version 2>&1 | grep -q "version $2 "
}
# --check: say whether both are there, install nothing (exit 3 if not).
if [ "${1:-}" = "--check" ]; then
  if installed promtool "$prometheus_release" && installed amtool "$alertmanager_release"; then
    echo "$gobin/promtool"
    echo "$gobin/amtool"
    exit 0
  fi
  echo "promtool $prometheus_release and amtool $alertmanager_release are not installed (make prometheus-tools)" >&2
  exit 3
fi
if ! installed promtool "$prometheus_release"; then
  echo "installing promtool $prometheus_release (go install; several minutes the first time)..." >&2
  GOFLAGS=-buildvcs=false go install \
    -ldflags "-X github.com/prometheus/common/version.Version=$prometheus_release" \
    "github.com/prometheus/prometheus/cmd/promtool@$prometheus_module" >&2
fi
if ! installed amtool "$alertmanager_release"; then
  echo "installing amtool $alertmanager_release (go install)..." >&2
  GOFLAGS=-buildvcs=false go install \
    -ldflags "-X github.com/prometheus/common/version.Version=$alertmanager_release" \
    "github.com/prometheus/alertmanager/cmd/amtool@v$alertmanager_release" >&2
fi
echo "$gobin/promtool"
echo "$gobin/amtool"
