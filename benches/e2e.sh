#!/usr/bin/env bash
# End to end on loopback: requests per second of a server with this crate's
# layer and extractor against a bare axum server with Json<T> and
# hand-written structs, both answering 200, driven by wrk with the same
# request in interleaved rounds. Loopback only; bounded by
# ROUNDS x 2 x DURATION seconds.
#
#   bash benches/e2e.sh                 # 3 rounds of 10 s each, 100-record batch
#   RECORDS=1 ROUNDS=5 DURATION=5 bash benches/e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
RECORDS=${RECORDS:-100}
CRATE_ADDR=127.0.0.1:18091
BARE_ADDR=127.0.0.1:18092

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
# SERVER: another build of the same program (benches/e2e-without-metrics.sh).
if [ -n "${SERVER:-}" ]; then
  server=$SERVER
else
  cargo build --release --features test-util,sqlite --example e2e_server >&2
  server=target/release/examples/e2e_server
fi

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$server" body "$RECORDS" > "$work/body.json"
"$server" crate "$CRATE_ADDR" & 
"$server" bare "$BARE_ADDR" &
for addr in "$CRATE_ADDR" "$BARE_ADDR"; do
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://$addr/" && break
    sleep 0.1
  done
done

# Both must accept the request before anything is measured.
for addr in "$CRATE_ADDR" "$BARE_ADDR"; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary @"$work/body.json" "http://$addr/mails")
  [ "$status" = 200 ] || { echo "server $addr answered $status" >&2; exit 1; }
done

measure() {
  BODY_FILE="$work/body.json" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" \
    -s benches/e2e/post.lua "http://$1/mails" | awk '/Requests\/sec/ {print $2}'
}

echo "body: $(wc -c < "$work/body.json") bytes ($RECORDS records), $CONNECTIONS connections, ${DURATION}s per run, $(nproc) cores"
printf '%-6s %14s %14s %8s\n' round cmc_webhook bare_axum ratio
sum_c=0; sum_b=0
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then c=$(measure "$CRATE_ADDR"); b=$(measure "$BARE_ADDR")
  else b=$(measure "$BARE_ADDR"); c=$(measure "$CRATE_ADDR"); fi
  printf '%-6s %14s %14s %8.3f\n' "$round" "$c" "$b" "$(echo "$c / $b" | bc -l)"
  sum_c=$(echo "$sum_c + $c" | bc -l); sum_b=$(echo "$sum_b + $b" | bc -l)
done
printf '%-6s %14.0f %14.0f %8.3f\n' all "$(echo "$sum_c / $ROUNDS" | bc -l)" "$(echo "$sum_b / $ROUNDS" | bc -l)" "$(echo "$sum_c / $sum_b" | bc -l)"
