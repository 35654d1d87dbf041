#!/usr/bin/env bash
# Soak test: the receiver, storing into a fresh inbox in a temporary
# directory, on loopback under a bounded mix of every fixture (in every
# encoding) and hostile inputs from several connections; checks no 5xx, no
# connection errors, every distinct accepted event and mail handled exactly
# once, and flat resident memory. Loopback only, bounded in time.
#
#   bash benches/soak.sh              # release build, 300 s, 8 connections
#   SECONDS_TO_RUN=60 bash benches/soak.sh
#   bash benches/soak.sh --short      # debug build, 10 s (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--short" ]; then
  # --all-features: the feature set the test suite was built with, so CI
  # links the two examples instead of building the crates again.
  cargo build --all-features --example receiver >&2
  cargo run --all-features --example soak -- \
    --receiver "${CARGO_TARGET_DIR:-target}/debug/examples/receiver" --seconds 10 --connections 4 --port 18181
else
  cargo build --release --example receiver >&2
  cargo run --release --features test-util --example soak -- \
    --receiver "${CARGO_TARGET_DIR:-target}/release/examples/receiver" --seconds "${SECONDS_TO_RUN:-300}" \
    --connections "${CONNECTIONS:-8}"
fi
