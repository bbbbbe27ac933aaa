# syntax=docker/dockerfile:1
# Multi-stage build. cargo-chef turns the manifests into a recipe, and the
# dependencies compile from it in a cached layer with a stub for every target
# Cargo.toml declares, so a bench or binary added there needs no change here.
# The runtime image carries only the two binaries (amosync, and the fake AmoCRM from
# crates/fake-amocrm for the demo stack), the MariaDB/MySQL client library
# and curl. scripts/check-dockerfile replays the build stages without Docker (CI).

FROM rust:1.95.0-bookworm AS chef
RUN apt-get update \
    && apt-get install -y --no-install-recommends default-libmysqlclient-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /app

# The recipe: manifests and targets only, so it changes when they do.
FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY crates crates
COPY benches benches
RUN cargo chef prepare --recipe-path recipe.json

# Dependency layer (rebuilt only when the recipe changes), then the crate itself.
FROM chef AS build
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --workspace --bins --recipe-path recipe.json
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY crates crates
COPY migrations migrations
COPY benches benches
RUN cargo build --release --locked --workspace --bins

FROM debian:12.12-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home amosync
COPY --from=build /app/target/release/amosync /usr/local/bin/amosync
COPY --from=build /app/target/release/amosync-fake-amocrm /usr/local/bin/amosync-fake-amocrm
USER amosync
ENV BIND_ADDR=0.0.0.0 PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/health" || exit 1
# `serve` waits for the database and applies migrations before listening.
ENTRYPOINT ["amosync"]
CMD ["serve"]
