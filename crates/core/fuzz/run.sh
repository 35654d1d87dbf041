#!/usr/bin/env bash
# Runs one fuzz target with the flags that make libFuzzer report slow and
# memory-hungry inputs, not only crashes:
#   -timeout=2        an input that takes more than 2 s is a failure
#   -rss_limit_mb=1024 and -malloc_limit_mb=512: an input that makes the
#                     process grow past them is a failure
#   -max_len=262144 -len_control=0
#                     inputs up to 256 KiB from the start, large enough
#                     for a quadratic loop to show (the seeds include
#                     crafted inputs); without -len_control=0 libFuzzer
#                     keeps its cap at the largest seed while coverage grows
#
#   crates/core/fuzz/run.sh parse 900        # 15 minutes
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain the
# nightly-only flags are allowed with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
target="${1:?usage: crates/core/fuzz/run.sh TARGET [SECONDS]}"
seconds="${2:-600}"
[ -d "corpus/$target" ] || bash seed-corpus.sh
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- \
  -max_total_time="$seconds" -timeout=2 -rss_limit_mb=1024 -malloc_limit_mb=512 \
  -max_len=262144 -len_control=0 -print_final_stats=1
