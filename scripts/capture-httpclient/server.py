#!/usr/bin/env python3
"""Record raw HTTP/1.1 requests byte for byte (stdlib only).

For each connection: read one request completely (request line and headers;
when `Expect: 100-continue` is present, answer `HTTP/1.1 100 Continue` before
reading the body; then the body by Content-Length, or by chunked framing, kept
exactly as sent, chunk-size lines, extensions and trailers included), write
every byte received, unmodified, to a file, and answer 200 "ok" with
`Connection: close`.

The file is named `<case>.http` when the request carries an `X-Capture-Case`
header (a safe name), otherwise `NNNN.http` by order of arrival (0001, 0002..).

Usage: server.py OUT_DIR PORT_FILE [--port N]
Binds 127.0.0.1 (port 0 = a free port unless --port), writes the port number
to PORT_FILE once listening, and serves one connection at a time until it gets
SIGTERM or SIGINT.
"""

import os
import re
import signal
import socket
import sys

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
TIMEOUT = 30.0
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


class Reader:
    """Reads from a socket and keeps every byte it hands out."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = b""
        self.raw = bytearray()

    def _fill(self):
        data = self.conn.recv(65536)
        if not data:
            raise EOFError("connection closed before the request was complete")
        self.buf += data

    def until(self, delim, limit):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                return self.take(i + len(delim))
            if len(self.buf) > limit:
                raise ValueError("line or head too long")
            self._fill()

    def take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        self.raw += out
        return out


def parse_head(head):
    lines = head.split(b"\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
    return lines[0], headers


def header(headers, name):
    for n, v in headers:
        if n == name:
            return v
    return None


def read_request(conn):
    r = Reader(conn)
    head = r.until(b"\r\n\r\n", MAX_HEAD)
    _, headers = parse_head(head)
    if (header(headers, "expect") or "").lower() == "100-continue":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    te = (header(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        total = 0
        while True:
            line = r.until(b"\r\n", 4096)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # trailers, then the empty line
                while r.until(b"\r\n", MAX_HEAD) != b"\r\n":
                    pass
                break
            total += size
            if total > MAX_BODY:
                raise ValueError("body too large")
            r.take(size)
            if r.take(2) != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
    else:
        length = int(header(headers, "content-length") or "0")
        if length > MAX_BODY:
            raise ValueError("body too large")
        r.take(length)
    return bytes(r.raw), headers


def main():
    args = sys.argv[1:]
    port = 0
    if "--port" in args:
        i = args.index("--port")
        port = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        sys.stderr.write(__doc__)
        return 2
    out_dir, port_file = args
    os.makedirs(out_dir, exist_ok=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.getsockname()[1])
    os.replace(tmp, port_file)

    seq = 0
    try:
        while True:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                try:
                    raw, headers = read_request(conn)
                except (EOFError, ValueError, OSError) as e:
                    sys.stderr.write("server.py: dropped a request: %s\n" % e)
                    continue
                seq += 1
                name = header(headers, "x-capture-case")
                if not (name and SAFE_NAME.match(name)):
                    name = "%04d" % seq
                with open(os.path.join(out_dir, name + ".http"), "wb") as f:
                    f.write(raw)
                try:
                    conn.sendall(RESPONSE)
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
