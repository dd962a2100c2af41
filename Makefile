# ThingSpace bulk status changes on Temporal.
#
#   make run    the whole product on this machine with a demo bulk change
#   make test   every test (unit, contract, integration, replay)
#   make bench  the throughput benchmark (10,000 devices; BENCH_DEVICES=100000)

GO        ?= go
BIN       := bin
TEMPORAL  = $(shell scripts/ensure-temporal-cli.sh)
export GOFLAGS := -buildvcs=false

.PHONY: run test test-unit lint tools build bench compose-check clean

build:
	$(GO) build -o $(BIN)/ ./worker ./starter ./cmd/...

tools:
	@scripts/ensure-temporal-cli.sh >/dev/null
	@echo "Temporal CLI: $$(scripts/ensure-temporal-cli.sh)"

run: build
	@scripts/ensure-postgres.sh
	@TSBULK_TEMPORAL_CLI=$(TEMPORAL) $(BIN)/demo

test: lint
	@scripts/ensure-postgres.sh --start
	@TSBULK_TEMPORAL_CLI=$(TEMPORAL) $(GO) test -race -count=1 -timeout 60m ./...

# Unit tests only (no Temporal dev server or end-to-end runs).
test-unit:
	@scripts/ensure-postgres.sh --start
	$(GO) test -race -count=1 -short ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	@PATH="$$PATH:$$($(GO) env GOPATH)/bin" staticcheck ./...

bench: build
	@scripts/ensure-postgres.sh --start
	@TSBULK_TEMPORAL_CLI=$(TEMPORAL) $(BIN)/bench -devices $${BENCH_DEVICES:-10000} $(BENCH_FLAGS)

compose-check:
	@command -v docker-compose >/dev/null 2>&1 || (echo "docker-compose is needed: apt-get install docker-compose"; exit 1)
	docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml is valid"

clean:
	rm -rf $(BIN) .run
