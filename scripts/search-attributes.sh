#!/usr/bin/env bash
# Registers the product's custom search attributes on a Temporal server
# (workflows/api/search.go; a workflow started with an unregistered one is
# refused). Idempotent: attributes already there are left alone.
#
#   scripts/search-attributes.sh [ADDRESS] [NAMESPACE]     (default 127.0.0.1:7233 default)
#
# TEMPORAL_CLI names the temporal binary (default: scripts/ensure-temporal-cli.sh).
set -euo pipefail
address="${1:-127.0.0.1:7233}"
namespace="${2:-default}"
cli="${TEMPORAL_CLI:-$(dirname "$0")/ensure-temporal-cli.sh}"
if [[ "$cli" == *ensure-temporal-cli.sh ]]; then cli="$("$cli")"; fi

# name type — keep in step with workflows/api/search.go (a test compares).
attributes="BulkChangeId Keyword
Operation KeywordList
ThingSpaceAccount Keyword
BulkChangeStatus Keyword
ICCID Keyword
Tenant Keyword"

existing="$("$cli" operator search-attribute list --address "$address" --namespace "$namespace" 2>/dev/null || true)"
while read -r name type; do
	if grep -qw "$name" <<<"$existing"; then
		continue
	fi
	"$cli" operator search-attribute create --address "$address" --namespace "$namespace" --name "$name" --type "$type" >/dev/null
	echo "registered search attribute $name ($type)"
done <<<"$attributes"
