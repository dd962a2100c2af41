#!/bin/sh
# Makes README's picture of the Temporal Web UI: a real bulk change run on
# the dev server, its page opened in headless Chromium
# (harness/webui TestWebUIShowsTheBulkChangeSummary), the screenshot kept.
set -eu
cd "$(dirname "$0")/.."
out="${1:-docs/images/webui-bulk-change.png}"
TSBULK_TEMPORAL_CLI="${TSBULK_TEMPORAL_CLI:-$(scripts/ensure-temporal-cli.sh)}" \
TSBULK_WEBUI_SCREENSHOT="$(pwd)/$out" \
	go test -count=1 -run TestWebUIShowsTheBulkChangeSummary ./harness/webui
echo "wrote $out"
