#!/usr/bin/env bash
# Checks the shipped alerting rules: `promtool check rules` on every rules file, then
# `promtool test rules` on their unit tests. Exits non-zero if either fails.
#
# Usage: scripts/check-alerts.sh [RULES_DIR]   (default: helm/capstan/files)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-helm/capstan/files}"

if ! command -v promtool >/dev/null; then
  echo "missing: promtool (install with: apt-get install -y --no-install-recommends prometheus)" >&2
  exit 1
fi

shopt -s nullglob
tests=("$dir"/*_test.yml)
rules=()
for f in "$dir"/*.yml; do
  [[ "$f" == *_test.yml ]] || rules+=("$f")
done
if [ ${#rules[@]} -eq 0 ] || [ ${#tests[@]} -eq 0 ]; then
  echo "no rules or no *_test.yml files in $dir" >&2
  exit 1
fi

echo "==> promtool check rules ${rules[*]}"
promtool check rules "${rules[@]}"
echo "==> promtool test rules ${tests[*]}"
promtool test rules "${tests[@]}"
