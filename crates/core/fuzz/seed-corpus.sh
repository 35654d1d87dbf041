#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets from the test fixtures:
# for `parse`, each fixture as a raw-mode input (mode byte 0, the
# Content-Type line, the body); `layer_extract` and `client_ip` start from
# libFuzzer's own inputs; `fast_path` takes each JSON event fixture raw
# (mode byte 0: a JSON body; 1: the same as a form body's `event`).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/parse corpus/layer_extract corpus/client_ip corpus/fast_path
for f in ../../../tests/fixtures/shared/event-*.json ../../../tests/fixtures/*event*.json; do
  [ -f "$f" ] || continue
  { printf '\0'; cat "$f"; } > "corpus/fast_path/$(basename "$f")"
  { printf '\1'; cat "$f"; } > "corpus/fast_path/form-$(basename "$f")"
done
for f in ../../../tests/fixtures/*.* ../../../tests/fixtures/shared/*.*; do
  case "$f" in
    *.json) ct="application/json" ;;
    *.form) ct="application/x-www-form-urlencoded" ;;
    *.multipart) ct=$(tr -d '\n' < "${f%.multipart}.content-type") ;;
    *) continue ;;
  esac
  { printf '\0%s\n' "$ct"; cat "$f"; } > "corpus/parse/$(basename "$f")"
done
# Crafted inputs that once cost far more than their size (the hardening
# review): libFuzzer mutates them, and -timeout / -rss_limit_mb in run.sh
# report any that is slow or hungry again.
rep() { local s="$1" n="$2" out=""; for ((i = 0; i < n; i++)); do out+="$s"; done; printf '%s' "$out"; }
{ printf '\0multipart/form-data; boundary=b\n--b\r\nContent-Disposition: form-data; name="attachment1"; filename="'
  rep '=?x?y' 3000; printf '"\r\n\r\nx\r\n--b--\r\n'; } > corpus/parse/crafted-encoded-words-filename
{ printf '\0application/json\n{"server_composition":"p","filter":"f","envelope-from":"a","envelope-to":"b","headers":[{"name":"Subject","value":"'
  rep '=?x?y' 10000; printf '"}]}'; } > corpus/parse/crafted-encoded-words-header
{ printf '\0application/json\n{"event_type":"blocks","server_composition":"p","event":{"blocks":['
  rep '{},' 10000; printf '{}]}}'; } > corpus/parse/crafted-empty-records
{ printf '\0application/json\n{"event_type":"bounces","server_composition":"p","event":{"bounces":[]},"x":['
  rep '[],' 20000; printf '[]]}'; } > corpus/parse/crafted-extra-array
{ printf '\0application/x-www-form-urlencoded\nevent_type=x'; for ((i = 0; i < 5000; i++)); do printf '&a%d=' "$i"; done; } \
  > corpus/parse/crafted-tiny-fields
{ printf '\0multipart/form-data; boundary=b\n--b\r\nContent-Disposition: form-data; name="attachment1"; filename*0*=UTF-8'"''"'%%41; '
  for ((i = 1; i < 2000; i++)); do printf 'filename*%d*=%%41; ' "$i"; done; printf '\r\n\r\nx\r\n--b--\r\n'; } \
  > corpus/parse/crafted-rfc2231-continuations
echo "seeded $(ls corpus/parse | wc -l) inputs into crates/core/fuzz/corpus/parse"
