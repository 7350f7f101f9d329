# syntax=docker/dockerfile:1
#
# One image for the whole demo stack: the `switchyard` host, the
# `switchyard-demo` upstreams (CRM, inventory) and the shipped plugins.
#
#   docker build -t switchyard .
#   docker run -p 8003:8003 -e AMQP_URL=amqp://guest:guest@<broker>:5672/%2f switchyard
#
# docker-compose.yml runs it with RabbitMQ and the demo upstreams
# (walk-through: docs/compose.md). Needs BuildKit (the default builder of
# Docker 23 and later) for the cache mounts.

# The toolchain the project is tested with (rust-version in Cargo.toml).
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Its own layer, before any source: it changes only with the toolchain.
RUN rustup target add wasm32-wasip2
COPY . .
# The cargo registry and target/ live in cache mounts rather than layers: a
# source change recompiles only the crates it touches, dependencies stay
# compiled between builds. Cache mounts are not part of the image, so the
# results are copied out to /out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p switchyard -p switchyard-demo \
 && cargo build --locked --target wasm32-wasip2 --profile plugin \
        -p switchyard-merge \
        -p switchyard-crm-producer \
        -p switchyard-inventory-producer \
 && mkdir -p /out/plugins \
 && cp target/release/switchyard target/release/switchyard-demo /out/ \
 && cp target/wasm32-wasip2/plugin/switchyard_merge.wasm /out/plugins/merge.wasm \
 && cp target/wasm32-wasip2/plugin/switchyard_crm_producer.wasm /out/plugins/crm-producer.wasm \
 && cp target/wasm32-wasip2/plugin/switchyard_inventory_producer.wasm /out/plugins/inventory-producer.wasm

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates for producers that reach upstreams over TLS (unpinned on
# purpose: it must stay current); a system user that owns only /data (the
# store and the compiled-plugin cache).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /app --shell /usr/sbin/nologin switchyard \
 && mkdir -p /data /app/plugins \
 && chown switchyard:switchyard /data
WORKDIR /app
# Least likely to change first.
COPY demo/data /app/demo/data
COPY --from=build /out/plugins/ /app/plugins/
COPY --from=build /out/switchyard /out/switchyard-demo /app/
ENV SWITCHYARD_PLUGINS=/app/plugins \
    SWITCHYARD_DATA=/data \
    SWITCHYARD_HTTP=0.0.0.0:8003
# Declared after the chown, so a new named volume starts owned by the user.
VOLUME /data
# 8003 the host's API; 8001 and 8002 the demo CRM and inventory.
EXPOSE 8003 8001 8002
# Numeric, so that runtimes can tell it is not root without reading passwd.
USER 10001:10001
ENTRYPOINT ["/app/switchyard"]
CMD ["run"]
