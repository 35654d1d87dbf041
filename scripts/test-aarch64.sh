#!/usr/bin/env bash
# Runs the parser's tests on another architecture (aarch64, under qemu),
# to show that the fast path's scanner, written as portable Rust that the
# compiler vectorises where it can, gives the same results there. Installs
# what it needs: the Rust target, a cross linker and qemu's user-mode
# emulator (Debian packages; apt-get update first). The inbox (SQLite,
# PostgreSQL) is left out: it has no code of its own per architecture.
#
#   scripts/test-aarch64.sh
#   scripts/test-aarch64.sh --test fast_path      # one test file
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add aarch64-unknown-linux-gnu
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  # The core's unit tests (the parsers and the fast path), then the
  # facade's tests of them.
  cargo test --target aarch64-unknown-linux-gnu -p cmc-webhook-core \
    --features axum,test-util --lib
  args=(--test fast_path --test roundtrip --test fixtures --test errors
        --test hostile --test charsets)
fi
cargo test --target aarch64-unknown-linux-gnu --no-default-features \
  --features axum,test-util "${args[@]}"
