#!/usr/bin/env bash
# Checks contrib/cmc-receiver.service with `systemd-analyze verify`, its
# ExecStart pointed at a receiver built here (the example the test run
# builds, or the one given as $1). Any complaint fails the check.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze is not installed: the unit was not verified (skipped)"
  exit 0
fi
program=${1:-${CARGO_TARGET_DIR:-target}/debug/examples/receiver}
[ -x "$program" ] || cargo build -q --all-features --example receiver
program=$(realpath "$program")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s#^ExecStart=/usr/local/bin/cmc-receiver#ExecStart=$program#" \
  contrib/cmc-receiver.service > "$work/cmc-receiver.service"
out=$(systemd-analyze verify --man=no "$work/cmc-receiver.service" 2>&1 || true)
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "contrib/cmc-receiver.service: systemd-analyze verify complained" >&2
  exit 1
fi
echo "contrib/cmc-receiver.service: verified"
