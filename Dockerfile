# syntax=docker/dockerfile:1
# Multi-stage build: dependencies compile in their own cached layer; the runtime
# image carries only the two binaries, the MariaDB/MySQL client library and curl.

FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends default-libmysqlclient-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app

# Dependency layer: rebuilt only when Cargo.toml or Cargo.lock change. Every target
# Cargo.toml names gets a stub so the manifest resolves.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin benches \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/bin/amosync-fake-amocrm.rs \
    && echo 'fn main() {}' > benches/webhooks.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bins \
    && rm -rf src benches

COPY src src
COPY migrations migrations
COPY benches benches
RUN touch src/main.rs src/lib.rs src/bin/amosync-fake-amocrm.rs \
    && cargo build --release --locked --bins

FROM debian:bookworm-slim AS runtime
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
