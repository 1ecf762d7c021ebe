#!/usr/bin/env bash
# The `agent` service of docker-compose.yml (the Dockerfile's `agent` target).
# Registers this container once, then runs the agent in its place.
#
# Every replica (`docker compose up -d --scale agent=3`) shares one volume at
# /var/lib/capstan-agent. Each takes the first free slot there, holding a lock on
# <name>.lock for as long as it runs: its home is /var/lib/capstan-agent/<name> and its
# name <prefix>-<slot> (compose-agent-1, compose-agent-2, ...). Names are unique, and a
# recreated container (new image, `down` and `up`) takes a slot again and keeps that
# slot's registration instead of registering anew.
#
# Environment: CAPSTAN_SERVER (HAProxy), CAPSTAN_ENVIRONMENT, CAPSTAN_AGENT_TAGS,
# AGENT_NAME_PREFIX; the registration token is read from /bootstrap/token.
set -euo pipefail

base=/var/lib/capstan-agent
prefix="${AGENT_NAME_PREFIX:-compose-agent}"

slot=1
while :; do
  name="$prefix-$slot"
  exec {lock}>"$base/$name.lock"
  # The lock is inherited by `capstan-agent run` below and released when it exits.
  if flock -n "$lock"; then
    break
  fi
  exec {lock}>&-
  slot=$((slot + 1))
done

export CAPSTAN_AGENT_HOME="$base/$name"
if [ ! -f "$CAPSTAN_AGENT_HOME/agent.json" ]; then
  install -d -m 0700 "$CAPSTAN_AGENT_HOME"
  echo "registering $name with $CAPSTAN_SERVER" >&2
  # The token goes in the environment of this one command, not on its command line.
  CAPSTAN_REGISTRATION_TOKEN="$(cat /bootstrap/token)" capstan-agent register \
    --server "$CAPSTAN_SERVER" --name "$name" \
    --environment "${CAPSTAN_ENVIRONMENT:-Development}" --tags "${CAPSTAN_AGENT_TAGS:-demo}"
fi
echo "running as $name (home $CAPSTAN_AGENT_HOME)" >&2
exec capstan-agent run
