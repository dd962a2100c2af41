# ThingSpace bulk status changes on Temporal.
#
#   make run    the whole product on this machine with a demo bulk change
#   make test   every test (unit, contract, integration, replay)
#   make bench  the throughput benchmark (10,000 devices; BENCH_DEVICES=100000)
#   make chaos  the chaos suite: kills, restarts and faults on 2,000 devices (docs/reliability.md)
#   make compose-up  the stack in Docker Compose, with Prometheus, Grafana and Alertmanager

GO        ?= go
BIN       := bin
TEMPORAL  = $(shell scripts/ensure-temporal-cli.sh)
export GOFLAGS := -buildvcs=false

.PHONY: run test test-unit lint tools build bench compose-check clean

# The commit goes into the binaries for --version (GOFLAGS turns Go's own
# VCS stamping off, which fails in some checkouts).
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null)

build:
	$(GO) build -ldflags "-X github.com/iot-ops/tsbulk/setup.commit=$(COMMIT)" -o $(BIN)/ ./worker ./starter ./callback-receiver ./harness/cmd/...

tools:
	@scripts/ensure-temporal-cli.sh >/dev/null
	@echo "Temporal CLI: $$(scripts/ensure-temporal-cli.sh)"

run: build
	@scripts/ensure-postgres.sh
	@echo "Dashboards and alerts come with Docker Compose (make compose-up): $(MONITORING_URLS)"
	@TSBULK_TEMPORAL_CLI=$(TEMPORAL) $(BIN)/demo

test: lint fuzz-short
	@scripts/ensure-postgres.sh --start
	@TSBULK_TEMPORAL_CLI=$(TEMPORAL) $(GO) test -race -count=1 -timeout 60m ./...

# Unit tests only (no Temporal dev server or end-to-end runs).
test-unit:
	@scripts/ensure-postgres.sh --start
	$(GO) test -race -count=1 -short ./...

# Native Go fuzz targets (package:Fuzz function); Go fuzzes one per run.
# What a run finds is written to the package's testdata/fuzz/ and replayed by
# every plain go test from then on.
FUZZ_TARGETS := ./changefile:FuzzParseCSV ./changefile:FuzzParseJSON ./changefile:FuzzReportHidesPPU ./callbacks:FuzzCallbackBody
FUZZTIME ?= 5m
FUZZMINIMIZETIME ?= 10s

.PHONY: fuzz fuzz-short

# Each fuzz target for FUZZTIME (make fuzz FUZZTIME=1h for longer).
# scripts/fuzz-target.sh tells a finding from Go 1.26's deadline race.
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		GO=$(GO) scripts/fuzz-target.sh $$t $(FUZZTIME) $(FUZZMINIMIZETIME) || exit 1; \
	done

# Each fuzz target for 20 seconds; part of make test.
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=20s FUZZMINIMIZETIME=5s

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	@PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...
	@# Temporal's determinism check of every workflow function (map order,
	@# time, goroutines, I/O); a false positive is marked //workflowcheck:ignore
	@# with the reason on the line above.
	@command -v workflowcheck >/dev/null 2>&1 || test -x "$$($(GO) env GOPATH)/bin/workflowcheck" || \
		$(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0
	@PATH="$$PATH:$$($(GO) env GOPATH)/bin" workflowcheck ./...

# The product, and in the same run against the same server the floors (the
# design's shape without activities: one parent, and the tree of shards of
# -shard-size devices, -shards-at-once at a time) and the predecessor's
# baseline: the
# table's ratios carry between hosts, its absolute figures do not
# (docs/benchmarks.md). BENCH_FLAGS="-temporal-address 127.0.0.1:7243" runs
# it on the PostgreSQL-backed server (make temporal-postgres-up).
bench: build
	@scripts/ensure-postgres.sh --start
	@TSBULK_TEMPORAL_CLI=$(TEMPORAL) $(BIN)/bench -devices $${BENCH_DEVICES:-10000} -floor $(BENCH_FLAGS)

# The chaos suite (docs/reliability.md): 2,000 devices, every process killed
# and restarted, ThingSpace and Rev.io faults, on a schedule drawn from a
# seed, after the same run without faults; exits 1 on any violated
# invariant. Its own PostgreSQL cluster and Temporal server (needs root).
#   make chaos CHAOS_FLAGS='-seed 42'          replay a seed
#   make chaos CHAOS_FLAGS='-temporal postgres' on the PostgreSQL-backed server
# make test runs the short version (harness/chaos/TestChaosShort).
.PHONY: chaos
chaos: build
	@TSBULK_TEMPORAL_CLI=$(TEMPORAL) $(BIN)/chaos -compare $(CHAOS_FLAGS)

# The Temporal server production runs (v1.29.1 on PostgreSQL) on this
# machine, without Docker: scripts/temporal-postgres.sh, deploy/README.md.
# Frontend on 127.0.0.1:7243 (TEMPORAL_PG_PORT); state in .run/temporal-postgres.
.PHONY: temporal-postgres-up temporal-postgres-down test-temporal-postgres

temporal-postgres-up:
	@scripts/ensure-postgres.sh --start
	@scripts/temporal-postgres.sh install >/dev/null
	@scripts/temporal-postgres.sh setup
	@scripts/temporal-postgres.sh start

temporal-postgres-down:
	@scripts/temporal-postgres.sh stop

# Integration tests on that server instead of a dev server per test (not part
# of make test). It stops the server afterwards only if it started it.
#   make test-temporal-postgres TEMPORAL_PG_TESTS='TestActivationEndToEnd'
TEMPORAL_PG_TESTS ?= TestWorkerKilledMidBulkChange|TestActivationEndToEnd
test-temporal-postgres:
	@scripts/ensure-postgres.sh --start
	@scripts/temporal-postgres.sh install >/dev/null
	@scripts/temporal-postgres.sh setup
	@was_up=; scripts/temporal-postgres.sh status >/dev/null && was_up=1; \
	addr=$$(scripts/temporal-postgres.sh start) || exit 1; \
	TSBULK_TEST_TEMPORAL_ADDRESS=$$addr $(GO) test -race -count=1 -timeout 60m -v -run '$(TEMPORAL_PG_TESTS)' ./harness/integration/; rc=$$?; \
	[ -n "$$was_up" ] || scripts/temporal-postgres.sh stop; exit $$rc

# The stack in containers with its monitoring (deploy/README.md; README.md,
# "Monitoring").
MONITORING_URLS := Grafana http://localhost:3000 (folder tsbulk), Prometheus http://localhost:9091, Alertmanager http://localhost:9093
.PHONY: compose-up prometheus-tools
compose-up:
	docker compose up -d
	@echo "Web UI http://localhost:8233; $(MONITORING_URLS)"

# The monitoring's checks alone (part of make test): promtool and amtool on
# deploy/, the rules' unit tests, and every dashboard and rule query against
# what a real end-to-end run exports (harness/monitoring).
.PHONY: monitoring-check
monitoring-check:
	@scripts/ensure-postgres.sh --start
	@TSBULK_TEMPORAL_CLI=$(TEMPORAL) $(GO) test -count=1 ./harness/monitoring/ ./harness/compose/

# promtool and amtool at the releases compose runs (go install, pinned in
# the script); harness/monitoring's tests install them the same way when
# they are missing.
prometheus-tools:
	@scripts/ensure-prometheus-tools.sh

# docker-compose.yml, alone and with docker-compose.mtls.yml, loaded as
# Docker Compose loads them (compose-go: the specification's schema, every
# reference resolved) and checked for the stack's start order and TLS
# settings; deploy/temporal/certs/generate.sh's certificates tried in a
# TLS handshake. No Docker engine needed; part of make test too.
compose-check:
	$(GO) test -count=1 ./harness/compose/

clean:
	rm -rf $(BIN) .run
