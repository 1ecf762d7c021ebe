#!/bin/sh
# The `agent-bootstrap` service of docker-compose.yml (curlimages/curl, BusyBox sh).
# Waits until a node answers through HAProxy, makes sure the agents' environment
# exists and writes a fresh registration token to /bootstrap/token, where the `agent`
# service reads it. Runs on every `docker compose up`; each run makes a new token.
#
# Environment: CAPSTAN_SERVER (HAProxy), CAPSTAN_ADMIN_API_KEY, CAPSTAN_ENVIRONMENT,
# AGENT_TOKEN_USES (how many agents may register with the token: at least the number
# of agent containers that have no registration yet).
set -eu

server="${CAPSTAN_SERVER:-http://haproxy:8080}"
environment="${CAPSTAN_ENVIRONMENT:-Development}"
uses="${AGENT_TOKEN_USES:-10}"
: "${CAPSTAN_ADMIN_API_KEY:?set CAPSTAN_ADMIN_API_KEY}"

log() { printf 'agent-bootstrap: %s\n' "$*" >&2; }

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The admin key goes to curl in a header file, so it is not on a command line.
printf 'Authorization: Bearer %s\n' "$CAPSTAN_ADMIN_API_KEY" >"$work/auth"

# POST $2 (JSON) to $1; the answer's body lands in $work/body, its status on stdout.
post() {
  curl -sS --max-time 30 -o "$work/body" -w '%{http_code}' -X POST \
    -H @"$work/auth" -H 'Content-Type: application/json' --data "$2" "$server$1"
}

# Through HAProxy, /api/nodes/ping answers 200 once some node is up and not draining
# (503 while HAProxy has none). The first node applies the migrations first.
log "waiting for the cluster at $server"
tries=0
until curl -fsS -o /dev/null --max-time 5 "$server/api/nodes/ping" 2>/dev/null; do
  tries=$((tries + 1))
  if [ "$tries" -ge 150 ]; then
    log "no node answered $server/api/nodes/ping within 5 minutes"
    exit 1
  fi
  sleep 2
done

status="$(post /api/environments "{\"name\":\"$environment\"}")"
case "$status" in
  201) log "created environment $environment" ;;
  409) log "environment $environment exists" ;;
  *) log "creating environment $environment: HTTP $status: $(cat "$work/body")"; exit 1 ;;
esac

status="$(post /api/agents/registration-tokens \
  "{\"uses\":$uses,\"expires_in\":\"1h\",\"note\":\"docker-compose agent-bootstrap\"}")"
if [ "$status" != 201 ]; then
  log "creating a registration token: HTTP $status: $(cat "$work/body")"
  exit 1
fi
token="$(sed -n 's/.*"token"[[:space:]]*:[[:space:]]*"\(capreg_[^"]*\)".*/\1/p' "$work/body")"
if [ -z "$token" ]; then
  log "the answer has no token: $(cat "$work/body")"
  exit 1
fi

# Readable only by the agent image's user (uid 10001); replaced in one step.
printf '%s\n' "$token" >/bootstrap/token.new
chown 10001:10001 /bootstrap/token.new
chmod 0400 /bootstrap/token.new
mv -f /bootstrap/token.new /bootstrap/token
log "wrote a registration token for $uses agents, valid 1h, to /bootstrap/token"
