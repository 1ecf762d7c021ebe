# syntax=docker/dockerfile:1
#
# The Capstan server image: one `capstan` binary on a small Debian runtime.
#
#   docker build -t capstan .
#   docker run --rm -p 8080:8080 -e CAPSTAN_DATABASE_URL=... -e CAPSTAN_BLOB_URL=... capstan
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts.

# ---- build ------------------------------------------------------------------
# rust:1 follows the latest stable Rust, which is always at least the workspace's
# rust-version (Cargo.toml).
FROM rust:1-bookworm AS builder
WORKDIR /src

# Only what the build reads: the workspace manifests, every member, and the SQL
# migrations that are compiled into the binary.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY loadtest ./loadtest
COPY migrations ./migrations

# The registry and target directory are cache mounts, so a rebuild recompiles only what
# changed. The target directory is not part of the image: the binary is copied out of
# it in the same step.
#
# When the polling agent exists (crates/capstan-agent, binary `capstan-agent`), build
# it here too: add `-p capstan-agent` to the cargo command and copy
# target/release/capstan-agent to /out. See the agent note at the end of this file.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p capstan \
    && mkdir -p /out \
    && cp target/release/capstan /out/capstan

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to S3 and OTLP endpoints. Nothing else is needed: the binary
# links only libc, libm and libgcc_s, and its TLS stack is built in.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid/gid, so volume ownership and Kubernetes' runAsNonRoot /
# runAsUser/fsGroup settings can name them. /srv/capstan is owned by that user, so a
# named volume mounted there for a file:// blob store is writable.
RUN groupadd --system --gid 10001 capstan \
    && useradd --system --uid 10001 --gid capstan --home-dir /var/lib/capstan \
       --create-home --shell /usr/sbin/nologin capstan \
    && install -d -o capstan -g capstan -m 0750 /srv/capstan

COPY --from=builder /out/capstan /usr/local/bin/capstan

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="capstan" \
      org.opencontainers.image.description="Capstan, a highly available deployment control plane: the server node and operator commands" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

ENV CAPSTAN_LISTEN=0.0.0.0:8080
WORKDIR /var/lib/capstan
USER 10001:10001
EXPOSE 8080

# Liveness only (/healthz stays 200 while draining or with PostgreSQL down); the load
# balancer decides on /api/nodes/ping. The image has no curl: bash (always present in
# Debian) opens a TCP connection with /dev/tcp, sends one HTTP/1.0 request and checks
# the status line. The port follows CAPSTAN_LISTEN.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${CAPSTAN_LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]

# The node shuts down in order on SIGTERM (drains, waits up to CAPSTAN_SHUTDOWN_GRACE
# for running tasks); give `docker stop -t` / stop_grace_period more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["capstan"]
CMD ["server"]

# ---- agent (not built yet) --------------------------------------------------
# Once crates/capstan-agent exists, an agent image is one more stage built with
# `docker build --target agent .`. It goes above the runtime stage (so the server
# stays the default, last stage) and reuses the runtime's base:
#
#   FROM debian:bookworm-slim AS agent
#   RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
#       && rm -rf /var/lib/apt/lists/*
#   RUN groupadd --system --gid 10001 capstan && useradd --system --uid 10001 \
#       --gid capstan --create-home --home-dir /var/lib/capstan capstan
#   COPY --from=builder /out/capstan-agent /usr/local/bin/capstan-agent
#   USER 10001:10001
#   ENTRYPOINT ["capstan-agent"]
