# syntax=docker/dockerfile:1
#
# Two images from one build: the Capstan server (the default, last stage) and the
# polling agent (`--target agent`).
#
#   docker build -t capstan .
#   docker run --rm -p 8080:8080 -e CAPSTAN_DATABASE_URL=... -e CAPSTAN_BLOB_URL=... capstan
#   docker build --target agent -t capstan-agent .
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
# changed. The target directory is not part of the image: the binaries are copied out of
# it in the same step. Both binaries are built at once, so the two images always come
# from the same sources.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p capstan -p capstan-agent \
    && mkdir -p /out \
    && cp target/release/capstan target/release/capstan-agent /out/

# ---- agent ------------------------------------------------------------------
# The polling agent, for trying agents out (docker-compose.yml runs one). Real
# deployment targets usually install `capstan-agent` on the host itself, as a systemd
# service (see docs/agent.md): scripts then run on the machine they deploy to, with
# its tools. This image has only bash, coreutils and ca-certificates; derive from it
# and install whatever your scripts call. Built with `docker build --target agent .`;
# it sits above the runtime stage so that the server stays the default, last stage.
FROM debian:bookworm-slim AS agent

# ca-certificates: TLS to an https:// server. bash: scripts run with it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bash ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# The same fixed, non-root uid/gid as the server image. The home holds agent.json
# (its credential, mode 0600), the journal of commands it started, the package cache
# and the scripts' working directories: keep it on a volume so the agent keeps its
# identity when the container is recreated.
RUN groupadd --system --gid 10001 capstan \
    && useradd --system --uid 10001 --gid capstan --home-dir /var/lib/capstan-agent \
       --shell /bin/bash capstan \
    && install -d -o capstan -g capstan -m 0700 /var/lib/capstan-agent

COPY --from=builder /out/capstan-agent /usr/local/bin/capstan-agent

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="capstan-agent" \
      org.opencontainers.image.description="Capstan's polling agent: runs scripts and deployment steps sent by a Capstan cluster" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

ENV CAPSTAN_AGENT_HOME=/var/lib/capstan-agent
WORKDIR /var/lib/capstan-agent
USER 10001:10001

# Register first (`docker run ... capstan-agent:local register --server ... --token ...`
# with the home on a volume), then the default command polls the server. On SIGTERM
# the agent stops taking commands and waits up to --shutdown-grace (60s) for running
# scripts: give `docker stop -t` / stop_grace_period more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["capstan-agent"]
CMD ["run"]

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
# The agent too, so one image serves both (`--entrypoint capstan-agent`); the `agent`
# stage above is the smaller image for agents alone.
COPY --from=builder /out/capstan-agent /usr/local/bin/capstan-agent

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="capstan" \
      org.opencontainers.image.description="Capstan, a highly available deployment control plane: the server node, operator commands and the polling agent" \
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
