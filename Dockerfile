# syntax=docker/dockerfile:1
# One image for the daemons of the distributed mode: `orchestrator distributed`, `worker run
# <participant>` and `bff run` (docker-compose.yml picks the command per service).
#
#   docker build -t alpes-saga:local .
#
# Needs BuildKit (the default builder of Docker 23 and later, and what `docker compose` and
# docker-compose 1.29 use): the cargo registry and target folder are cache mounts, so a rebuild
# after a source change recompiles only what changed.

# The builder's Rust release: at least the workspace's rust-version, and what the locked
# dependencies require (uuid 1.29.3 needs 1.89; cargo refuses to build a crate on an older rustc).
ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-bookworm AS builder
# protoc: the pulsar crate generates its protocol code at build time. Debian packages are not
# pinned to versions: a stable release's point updates are security fixes, wanted at each build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The binaries are copied out of the cache-mounted target folder within the same step: a cache
# mount is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p orchestrator -p worker -p bff --features pulsar --bins \
    && mkdir -p /out \
    && cp target/release/orchestrator target/release/worker target/release/bff /out/

FROM debian:bookworm-slim AS runtime
# libssl3: the Pulsar client links OpenSSL (native-tls); curl: the containers' health checks.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 alpes \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin alpes
COPY --from=builder /out/orchestrator /out/worker /out/bff /usr/local/bin/
# The brands marca seeds (ALPES__MARCAS in docker-compose.yml points here).
COPY workers/seed/marcas.json /usr/local/share/alpes/marcas.json
USER 10001:10001
ENV ALPES_LOG_FORMAT=json
# orchestrator 8000, marca 8001, influencer 8002, tracking 8003, cliente 8004, pagos 8005,
# proveedor 8006 (HTTP API, /health, /metrics); the BFF and console 5001.
EXPOSE 8000 8001 8002 8003 8004 8005 8006 5001
CMD ["orchestrator", "distributed"]
