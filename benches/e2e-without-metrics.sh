#!/usr/bin/env bash
# benches/e2e.sh with the server built as the single crate built it before
# the workspace split: examples/e2e_server.rs as a package of its own,
# depending on the facade with `test-util`, `sqlite` and `axum` only. (In
# the workspace, the example also gets the core's `metrics` feature
# through the receiver, a dev-dependency of the root package, so its
# server counts every batch.) Same variables as benches/e2e.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
sed "s#^\#\[path = \"../benches/support/baseline.rs\"\]#\#[path = \"$root/benches/support/baseline.rs\"]#" \
  "$root/examples/e2e_server.rs" > "$work/src/main.rs"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "e2e-without-metrics"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
cmc-webhook = { path = "$root", features = ["test-util", "sqlite", "axum"] }
axum = { version = "0.8", features = ["http1", "tokio"] }
tokio = { version = "1", features = ["rt-multi-thread", "macros", "net", "io-util", "time", "sync"] }
tower = { version = "0.5", features = ["util"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
rusqlite = { version = "0.32", features = ["bundled"] }
sqlx = { version = "0.9.1", default-features = false, features = ["runtime-tokio", "sqlite-bundled", "postgres", "migrate"] }
jiff = "1"
bytes = "1"
TOML
cp "$root/Cargo.lock" "$work/"
target=${CARGO_TARGET_DIR:-$root/target}
CARGO_TARGET_DIR=$target cargo build --release --manifest-path "$work/Cargo.toml" >&2
SERVER=$target/release/e2e-without-metrics bash "$root/benches/e2e.sh"
