#!/usr/bin/env bash
# Lints each crate's library with no features, with each of its features
# alone, and with all of them (clippy, warnings denied), so that no
# combination a user may pick fails to build. Then checks that the
# PostgreSQL inbox builds without SQLite's C library.
set -euo pipefail
cd "$(dirname "$0")/.."

lint() {
  echo "-- cargo clippy -p $1 --lib $2"
  # shellcheck disable=SC2086
  cargo clippy --quiet -p "$1" --lib $2 -- -D warnings
}

for crate in cmc-webhook-core cmc-webhook-inbox cmc-webhook; do
  lint "$crate" "--no-default-features"
  features=$(cargo metadata --no-deps --format-version 1 \
    | python3 -c "import json,sys; m=json.load(sys.stdin); p=[p for p in m['packages'] if p['name']=='$crate'][0]; print(' '.join(f for f in sorted(p['features']) if f != 'default'))")
  for feature in $features; do
    lint "$crate" "--no-default-features --features $feature"
  done
  lint "$crate" "--all-features"
done
lint cmc-receiver ""
# Without the console (a build that leaves it out still compiles).
lint cmc-receiver "--no-default-features"

if cargo tree -p cmc-webhook-inbox --no-default-features --features postgres -e normal | grep -q libsqlite3-sys; then
  echo "cmc-webhook-inbox with only the postgres feature depends on libsqlite3-sys" >&2
  exit 1
fi
if cargo tree -p cmc-webhook --no-default-features --features axum -e normal | grep -qE "sqlx|libsqlite3-sys|regex "; then
  echo "cmc-webhook with only the axum feature depends on a database crate or regex" >&2
  exit 1
fi
# The inbox's doc tests with PostgreSQL alone: its examples are what a
# PostgreSQL-only user copies, and clippy --lib does not compile them.
echo "-- cargo test -p cmc-webhook-inbox --no-default-features --features postgres --doc"
cargo test --quiet -p cmc-webhook-inbox --no-default-features --features postgres --doc
echo "every combination builds"
