"""A relay target for tests/relay.rs: an HTTP server that verifies each
request with the `standardwebhooks` package (PyPI), an implementation of
the specification independent of the receiver's, and reports every request
as one JSON line on stdout.

    python3 relay_target.py PORT SECRETS_JSON FAIL_FIRST [DELAY_MS]

PORT 0 picks a free port. Each secret is tried alone; `verified` lists the
result per secret. The first FAIL_FIRST requests of each webhook-id are
answered 500, later ones 200; a request no secret verifies is answered 401.
Each answer waits DELAY_MS (0 by default) after the request is reported.
With RELAY_TARGET_TLS=CERT_PEM:KEY_PEM in the environment, it serves
HTTPS. The first line printed is {"port": N}, or {"import_error": "..."} when the
package cannot be imported (exit code 3).
"""

import base64
import email.parser
import email.policy
import hashlib
import http.server
import json
import os
import ssl
import sys
import threading
import time

try:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
except Exception as e:  # noqa: BLE001 - any failure to import is reported
    print(json.dumps({"import_error": repr(e)}), flush=True)
    sys.exit(3)

PORT = int(sys.argv[1])
SECRETS = json.loads(sys.argv[2])
FAIL_FIRST = int(sys.argv[3])
DELAY = int(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0
HOOKS = [Webhook(s) for s in SECRETS]
SEEN = {}
LOCK = threading.Lock()


def digest(data):
    return hashlib.sha256(data).hexdigest()


def parse(content_type, body):
    """The JSON payload, and each attachment's size and SHA-256 (from the
    inline base64, or from its multipart part)."""
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        parts = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            parts[name] = (part.get_content_type(), part.get_filename(), part.get_payload(decode=True))
        payload = json.loads(parts.pop("payload")[2])
        files = []
        for a in payload["mail"]["attachments"]:
            media, filename, data = parts[a["part"]]
            files.append({"part": a["part"], "size": len(data), "sha256": digest(data),
                          "content_type": media, "filename": filename})
        return payload, files, sorted(parts)
    payload = json.loads(body)
    files = []
    if payload.get("type") == "inbound":
        for a in payload["mail"]["attachments"]:
            data = base64.b64decode(a.pop("data"))
            files.append({"size": len(data), "sha256": digest(data)})
    return payload, files, []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        verified = []
        for hook in HOOKS:
            try:
                hook.verify(body, headers, json_parse=False)
                verified.append(True)
            except WebhookVerificationError:
                verified.append(False)
        webhook_id = headers.get("webhook-id", "")
        with LOCK:
            SEEN[webhook_id] = SEEN.get(webhook_id, 0) + 1
            nth = SEEN[webhook_id]
        mail = body.startswith(b"--") or b'"type":"inbound"' in body
        if not any(verified):
            status = 401
        elif mail and os.environ.get("RELAY_TARGET_REFUSE_MAILS"):
            status = 413  # as a body size limit in front of the application would
        elif nth <= FAIL_FIRST:
            status = 500
        else:
            status = 200
        record = {
            "arrived": time.monotonic(),
            "id": webhook_id,
            "timestamp": headers.get("webhook-timestamp"),
            "signatures": len(headers.get("webhook-signature", "").split(" ")),
            "verified": verified,
            "status": status,
            "content_type": headers.get("content-type", ""),
            "body_sha256": digest(body),
        }
        try:
            record["payload"], record["files"], record["other_parts"] = parse(record["content_type"], body)
        except Exception as e:  # noqa: BLE001 - reported to the test
            record["parse_error"] = repr(e)
        with LOCK:  # one line at a time: print() from threads interleaves
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        if DELAY:
            time.sleep(DELAY)
        answer = b"no\n" if status != 200 else b"ok\n"
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the receiver went away (killed by a test): it sends again


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
# HTTPS when RELAY_TARGET_TLS is "CERT_PEM:KEY_PEM".
if os.environ.get("RELAY_TARGET_TLS"):
    cert, key = os.environ["RELAY_TARGET_TLS"].split(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
