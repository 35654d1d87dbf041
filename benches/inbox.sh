#!/usr/bin/env bash
# The inbox end to end, on loopback: events per second and the latency of
# the 200 of a receiver that stores every event before answering, side by
# side in one run with
#   (a) the same server without a store (the layer and extractor only), and
#   (b) the database's own speed: the same rows inserted by a minimal
#       program (rusqlite, one transaction per batch, WAL, synchronous FULL).
# wrk sends 32 connections of event batches of 1, 20 and 100 records, each
# request with Message-IDs of its own (so every event is new). The inbox
# runs at its defaults (synchronous FULL) with a worker draining it into a
# no-op handler ("inbox"), and without a worker ("store only").
# The databases are made in target/inbox-bench (on the disk, not /tmp).
#
#   bash benches/inbox.sh                      # 10 s per measurement
#   DURATION=5 RECORDS="100" bash benches/inbox.sh
# CARGO_TARGET_DIR and SERVER (a server built already) are honoured;
# ADDR (127.0.0.1:18095) and WORK (the
# databases' folder) may be set, to run beside another measurement.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
RECORDS=${RECORDS:-1 20 100}
ADDR=${ADDR:-127.0.0.1:18095}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
# SERVER: a server built already (to compare two builds in one run).
if [ -z "${SERVER:-}" ]; then
  cargo build --release --features test-util,sqlite --example e2e_server >&2
fi
server=${SERVER:-${CARGO_TARGET_DIR:-target}/release/examples/e2e_server}

work=${WORK:-target/inbox-bench}
rm -rf "$work"
mkdir -p "$work"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# Runs a server in mode $1 (with database $2 if any), measures it with wrk,
# and prints "requests/s p50 p99".
measure() {
  local mode=$1 db=${2:-}
  if [ -n "$db" ]; then "$server" "$mode" "$ADDR" "$db" & else "$server" "$mode" "$ADDR" & fi
  local pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://$ADDR/" && break
    sleep 0.1
  done
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary @"$work/body.json" "http://$ADDR/mails")
  [ "$status" = 200 ] || { echo "$mode answered $status" >&2; exit 1; }
  RUN="$mode$RANDOM" BODY_FILE="$work/body.json" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" \
    --latency -s benches/e2e/unique.lua "http://$ADDR/mails" > "$work/wrk.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} END {print rps, p50, p99}' "$work/wrk.txt"
}

echo "$CONNECTIONS connections, ${DURATION}s per measurement, $(nproc) cores"
printf '%-8s %-24s %12s %10s %10s %8s\n' records server events/s p50 p99 "vs (b)"
for records in $RECORDS; do
  "$server" body "$records" > "$work/body.json"
  raw=$("$server" raw "$work/raw-$records.sqlite3" "$records" "$DURATION")
  raw_eps=$(echo "$raw" | awk '{print $1}')
  raw_p50=$(echo "$raw" | sed -E 's/.*p50 ([^,]+),.*/\1/')
  raw_p99=$(echo "$raw" | sed -E 's/.*p99 (.+)$/\1/')
  for mode in inbox store crate; do
    case $mode in
      inbox) label="inbox (store + worker)"; db="$work/inbox-$records.sqlite3" ;;
      store) label="inbox (store only)"; db="$work/store-$records.sqlite3" ;;
      crate) label="(a) no store"; db="" ;;
    esac
    read -r rps p50 p99 < <(measure "$mode" "$db")
    eps=$(echo "$rps * $records" | bc -l)
    printf '%-8s %-24s %12.0f %10s %10s %8.2f\n' "$records" "$label" "$eps" "$p50" "$p99" \
      "$(echo "$eps / $raw_eps" | bc -l)"
  done
  printf '%-8s %-24s %12.0f %10s %10s %8s\n' "$records" "(b) rusqlite, 1 tx/batch" "$raw_eps" \
    "$raw_p50" "$raw_p99" "1.00"
done
rm -rf "$work"
