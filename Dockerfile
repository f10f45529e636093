# syntax=docker/dockerfile:1

# ---- build ----------------------------------------------------------------------------------
# The full (non-slim) image brings the C/C++ toolchain that aws-lc-sys (TLS) compiles with.
FROM rust:1.95-bookworm AS builder
WORKDIR /src

COPY Cargo.toml Cargo.lock build.rs ./
# benches/ is needed only because Cargo.toml declares a bench target that cargo must parse.
COPY benches/ benches/
# config/default.toml and migrations/ are embedded into the binary at compile time.
COPY config/ config/
COPY migrations/ migrations/
COPY src/ src/
# The checked queries compile from their committed offline data, with no database at build
# time (.cargo/config.toml sets SQLX_OFFLINE).
COPY .sqlx/ .sqlx/
COPY .cargo/ .cargo/
# The `gavel` command (and the development tools beside it) is the workspace's `gavel-cli`
# package; its integration tests are not built here.
COPY cli/Cargo.toml cli/
COPY cli/src/ cli/src/

# The cache mount keeps downloaded crates between builds (BuildKit); target/ is not cached,
# so every build compiles from a clean tree.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --package gavel-cli --bin gavel

# ---- run ------------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gavel \
    && useradd --system --uid 10001 --gid gavel --no-create-home --shell /usr/sbin/nologin gavel

COPY --from=builder /src/target/release/gavel /usr/local/bin/gavel

# GAVEL_DATABASE_URL must be set (postgres://user:password@host:5432/db): this image has no
# PostgreSQL server, so Gavel's private-database mode (empty database URL) is not available
# in the container. Set GAVEL_PUBLIC_URL to the URL partners reach this server at (the base of
# a ping's post_url). GAVEL_PII_KEYS must be set too (`gavel pii new-key` makes a key;
# docs/pii.md): posted leads' PII is sealed with it, and serve refuses to start without it.
# Every other setting can be given as a GAVEL_* variable too.
ENV GAVEL_LISTEN=0.0.0.0:8080
EXPOSE 8080

# Numeric, so that orchestrators can verify the image runs as non-root.
USER 10001:10001
ENTRYPOINT ["gavel"]
CMD ["serve"]
