#!/usr/bin/env bash
# Makes sure the Temporal CLI (dev server and Web UI) is installed, and
# prints its path. v1.5.1 is the newest release that builds from the Go
# module proxy; it is installed with `go install`, outside this module's
# requirements. The first build takes about five minutes.
set -euo pipefail
version=v1.5.1
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
bin="$gobin/temporal"
stamp="$gobin/.temporal-cli-version"
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  echo "$bin"
  exit 0
fi
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "Server 1.29.1"; then
  echo "$version" > "$stamp"
  echo "$bin"
  exit 0
fi
echo "installing the Temporal CLI $version (go install; about five minutes the first time)..." >&2
GOFLAGS=-buildvcs=false go install "github.com/temporalio/cli/cmd/temporal@$version" >&2
echo "$version" > "$stamp"
echo "$bin"
