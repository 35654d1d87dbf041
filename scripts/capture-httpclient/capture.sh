#!/usr/bin/env bash
# Capture the raw HTTP requests that Apache HttpClient 4.5 / HttpMime 4.5 write
# for CMC-shaped webhooks, into tests/fixtures/httpclient/ (<case>.http and
# manifest.json). Run from the crate root:
#
#   bash scripts/capture-httpclient/capture.sh
#
# Installs nothing. Needs (Debian): default-jdk-headless libhttpclient-java
# libhttpmime-java, and python3. The output is deterministic: running it again
# rewrites identical files (see tests/fixtures/httpclient/README.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/tests/fixtures/httpclient"

if [ ! -f "$root/Cargo.toml" ] || [ ! -d "$root/tests/fixtures" ]; then
    echo "capture.sh: expected the crate root at $root" >&2
    exit 1
fi

# ---- check the packages -------------------------------------------------
missing=()
for pkg in default-jdk-headless libhttpclient-java libhttpmime-java libhttpcore-java libcommons-logging-java; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
jars=(/usr/share/java/httpclient.jar /usr/share/java/httpcore.jar /usr/share/java/httpmime.jar
      /usr/share/java/commons-logging.jar /usr/share/java/commons-codec.jar)
for jar in "${jars[@]}"; do
    [ -f "$jar" ] || missing+=("($jar)")
done
if [ "${#missing[@]}" -gt 0 ] || ! command -v javac >/dev/null || ! command -v java >/dev/null; then
    echo "capture.sh: missing: ${missing[*]:-javac/java}" >&2
    echo "install them (as root) with:" >&2
    echo "  apt-get update && apt-get install -y default-jdk-headless libhttpclient-java libhttpmime-java" >&2
    exit 1
fi
command -v python3 >/dev/null || { echo "capture.sh: python3 is needed" >&2; exit 1; }
cp="$(IFS=:; echo "${jars[*]}")"

# ---- work area, and cleanup of what this script started ----------------
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# ---- compile --------------------------------------------------------------
javac --release 17 -encoding UTF-8 -cp "$cp" -d "$work/classes" "$here/Capture.java"

# ---- start the recording server on a free loopback port ------------------
python3 "$here/server.py" "$work/spool" "$work/port" &
server_pid=$!
for _ in $(seq 1 100); do
    [ -s "$work/port" ] && break
    kill -0 "$server_pid" 2>/dev/null || { echo "capture.sh: server.py exited" >&2; exit 1; }
    sleep 0.1
done
[ -s "$work/port" ] || { echo "capture.sh: server.py did not start" >&2; exit 1; }
port="$(cat "$work/port")"

# ---- send every case ----------------------------------------------------
# (small heap, C1 only, one GC thread: keeps CPU use low)
java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dfile.encoding=UTF-8 \
    -cp "$cp:$work/classes" Capture "$port" "$work/manifest.json" > "$work/client.log"
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""

# ---- check, name and install the captures -------------------------------
python3 - "$work" "$out" <<'PY'
import json, os, re, sys

work, out = sys.argv[1], sys.argv[2]
spool = os.path.join(work, "spool")
manifest = json.load(open(os.path.join(work, "manifest.json"), encoding="utf-8"))
got = sorted(f for f in os.listdir(spool) if f.endswith(".http"))
if len(got) != len(manifest):
    sys.exit("capture.sh: %d requests captured for %d cases" % (len(got), len(manifest)))

captures = {}
for i, case in enumerate(manifest):
    name = "%04d.http" % (i + 1)
    raw = open(os.path.join(spool, name), "rb").read()
    head, sep, body = raw.partition(b"\r\n\r\n")
    problems = []
    if not sep:
        problems.append("no end of header")
    if not raw.startswith(b"POST /mails HTTP/1.1\r\n"):
        problems.append("does not start with the POST request line")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    if headers.get("content-type") != case["content_type"]:
        problems.append("Content-Type %r, manifest says %r" % (headers.get("content-type"), case["content_type"]))
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    if chunked != (case["transfer"] == "chunked"):
        problems.append("transfer framing does not match the manifest")
    if not chunked and int(headers.get("content-length", "-1")) != len(body):
        problems.append("Content-Length does not match the body")
    if ("expect" in headers) != case["expect_continue"]:
        problems.append("Expect header does not match the manifest")
    if case["mode"].startswith("multipart"):
        b = case["boundary"].encode("ascii")
        if b"--" + b + b"\r\n" not in body or b"--" + b + b"--\r\n" not in body:
            problems.append("fixed boundary missing from the body")
        if ("boundary=" + case["boundary"]) not in case["content_type"]:
            problems.append("fixed boundary missing from the Content-Type")
    if problems:
        sys.exit("capture.sh: %s (%s): %s" % (case["case"], name, "; ".join(problems)))
    captures[case["file"]] = raw

os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    if f.endswith(".http") or f == "manifest.json":
        os.remove(os.path.join(out, f))
for f, raw in captures.items():
    with open(os.path.join(out, f), "wb") as fh:
        fh.write(raw)
with open(os.path.join(work, "manifest.json"), "rb") as src, open(os.path.join(out, "manifest.json"), "wb") as dst:
    dst.write(src.read())
print("capture.sh: wrote %d captures and manifest.json to %s" % (len(captures), out))
PY

# ---- versions used (for the README) -------------------------------------
echo "capture.sh: versions used:"
dpkg-query -W -f='  ${Package} ${Version}\n' default-jdk-headless libhttpclient-java libhttpmime-java \
    libhttpcore-java libcommons-logging-java libcommons-codec-java
java -version 2>&1 | sed 's/^/  /'
