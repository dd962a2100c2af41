# One image for every tsbulk process. The service picks the command with
# its entrypoint (see docker-compose.yml):
#
#   worker                 Temporal worker (admin endpoints on worker.listen)
#   callback-receiver      ThingSpace callback endpoint; `register` registers it
#   starter                CLI: submit, status, results, list, billing-retry
#   thingspace-simulator   ThingSpace M2M API simulator (demo and tests)
#   revio-simulator        Rev.io API simulator (demo and tests)
#
# Configuration comes from TSBULK_* environment variables (or a YAML file
# named by --config / TSBULK_CONFIG); see config/config.go. Listen addresses
# default to 127.0.0.1: in a container set them to 0.0.0.0.
#
# Only classic Dockerfile features are used (no BuildKit mounts or heredocs),
# so docker-compose v1 builds it as well as `docker build` and Compose v2.

ARG GO_VERSION=1.26

# ---- build ------------------------------------------------------------------
FROM golang:${GO_VERSION} AS build

# The image's Go must satisfy go.mod (go 1.26.8): the golang images set
# GOTOOLCHAIN=local, so an older 1.26.x fails here instead of downloading.
ENV CGO_ENABLED=0 \
    GOFLAGS=-buildvcs=false

WORKDIR /src

# Modules first, so that source edits reuse the download layer.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .

# BuildKit sets TARGETOS/TARGETARCH (docker buildx --platform); the classic
# builder leaves them empty and Go builds for the build machine.
ARG TARGETOS
ARG TARGETARCH
# .git is not in the context: the commit for --version comes as a build
# argument (docker build --build-arg COMMIT=$(git rev-parse --short=12 HEAD)).
ARG COMMIT=unknown
RUN GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w -X github.com/iot-ops/tsbulk/setup.commit=${COMMIT}" -o /out/ \
        ./worker \
        ./starter \
        ./callback-receiver \
        ./harness/cmd/thingspace-simulator \
        ./harness/cmd/revio-simulator

# ---- runtime ----------------------------------------------------------------
# debian-slim rather than distroless: curl lets Compose (and Kubernetes exec
# probes) check the admin endpoints /healthz and /readyz. The binaries are
# static, so the image holds nothing else of ours.
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tsbulk \
    && useradd --system --uid 10001 --gid tsbulk --home-dir /home/tsbulk --create-home \
        --shell /usr/sbin/nologin tsbulk

COPY --from=build /out/ /usr/local/bin/

# worker admin, callbacks, callback-receiver admin, simulators
EXPOSE 9090 9001 9092 8090 8091

USER 10001:10001
WORKDIR /home/tsbulk

# The worker unless the service says otherwise.
CMD ["worker"]
