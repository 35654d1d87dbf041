#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets from the test fixtures:
# for `parse`, each fixture as a raw-mode input (mode byte 0, the
# Content-Type line, the body); `layer_extract` and `client_ip` start from
# libFuzzer's own inputs.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/parse corpus/layer_extract corpus/client_ip
for f in ../tests/fixtures/*.* ../tests/fixtures/shared/*.*; do
  case "$f" in
    *.json) ct="application/json" ;;
    *.form) ct="application/x-www-form-urlencoded" ;;
    *.multipart) ct=$(tr -d '\n' < "${f%.multipart}.content-type") ;;
    *) continue ;;
  esac
  { printf '\0%s\n' "$ct"; cat "$f"; } > "corpus/parse/$(basename "$f")"
done
echo "seeded $(ls corpus/parse | wc -l) inputs into fuzz/corpus/parse"
