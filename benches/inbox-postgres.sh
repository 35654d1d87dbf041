#!/usr/bin/env bash
# The PostgreSQL inbox end to end, on loopback: events per second stored
# by one receiver instance and by two instances on the same database (the
# fleet case), side by side in one run with PostgreSQL's own speed for the
# same rows (a minimal program: one multi-row INSERT and one transaction
# per batch, from one connection). Each measurement gets a fresh database.
# wrk sends 32 connections in all, each request with Message-IDs of its own.
# Needs a server: run it under scripts/with-postgres.sh.
#
#   scripts/with-postgres.sh bash benches/inbox-postgres.sh
#   RECORDS="100" DURATION=5 scripts/with-postgres.sh bash benches/inbox-postgres.sh
# CARGO_TARGET_DIR and SERVER (a server built already) are honoured; the addresses A and B may be set.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CMC_POSTGRES_URL:?run under scripts/with-postgres.sh, or set CMC_POSTGRES_URL}"
DURATION=${DURATION:-10}
RECORDS=${RECORDS:-1 100}
A=${A:-127.0.0.1:18097}
B=${B:-127.0.0.1:18098}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
# SERVER: a server built already (to compare two builds in one run).
if [ -z "${SERVER:-}" ]; then
  cargo build --release --features test-util,sqlite,postgres --example e2e_server >&2
fi
server=${SERVER:-${CARGO_TARGET_DIR:-target}/release/examples/e2e_server}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

base=${CMC_POSTGRES_URL%/*}
n=0
fresh() {
  n=$((n + 1))
  PGOPTIONS='--client-min-messages=warning' psql -q "$CMC_POSTGRES_URL" -c "DROP DATABASE IF EXISTS bench_$n" -c "CREATE DATABASE bench_$n" >/dev/null
  echo "$base/bench_$n"
}
up() {
  for _ in $(seq 100); do curl -s -o /dev/null "http://$1/" && return; sleep 0.1; done
  echo "no server on $1" >&2; exit 1
}
# wrk on $1 with $2 connections; prints "requests/s p50 p99".
load() {
  RUN="$1$RANDOM" BODY_FILE="$work/body.json" wrk -t1 -c"$2" -d"${DURATION}s" --latency \
    -s benches/e2e/unique.lua "http://$1/mails" |
    awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} END {print rps, p50, p99}'
}

echo "$(nproc) cores, ${DURATION}s per measurement, PostgreSQL $(psql -tA "$CMC_POSTGRES_URL" -c 'SHOW server_version')"
printf '%-8s %-34s %12s %10s %10s %8s\n' records setup events/s p50 p99 "vs (b)"
for records in $RECORDS; do
  "$server" body "$records" > "$work/body.json"
  raw=$("$server" raw "$(fresh)" "$records" "$DURATION")
  raw_eps=$(echo "$raw" | awk '{print $1}')

  url=$(fresh)
  "$server" inbox "$A" "$url" & one=$!
  up "$A"
  read -r rps p50 p99 < <(load "$A" 32)
  kill "$one"; wait "$one" 2>/dev/null || true
  eps=$(echo "$rps * $records" | bc -l)
  printf '%-8s %-34s %12.0f %10s %10s %8.2f\n' "$records" "one instance (store + worker)" "$eps" "$p50" "$p99" "$(echo "$eps / $raw_eps" | bc -l)"

  url=$(fresh)
  "$server" inbox "$A" "$url" & one=$!
  "$server" inbox "$B" "$url" & two=$!
  up "$A"; up "$B"
  load "$A" 16 > "$work/a.txt" &
  load "$B" 16 > "$work/b.txt"
  wait %%  2>/dev/null || true
  sleep 0.5
  read -r ra pa qa < "$work/a.txt"
  read -r rb pb qb < "$work/b.txt"
  kill "$one" "$two"; wait "$one" "$two" 2>/dev/null || true
  eps=$(echo "($ra + $rb) * $records" | bc -l)
  printf '%-8s %-34s %12.0f %10s %10s %8.2f\n' "$records" "two instances (store + worker each)" "$eps" "$pa/$pb" "$qa/$qb" "$(echo "$eps / $raw_eps" | bc -l)"

  printf '%-8s %-34s %12.0f %10s %10s %8s\n' "$records" "(b) one INSERT per batch" "$raw_eps" \
    "$(echo "$raw" | sed -E 's/.*p50 ([^,]+),.*/\1/')" "$(echo "$raw" | sed -E 's/.*p99 (.+)$/\1/')" "1.00"
done
