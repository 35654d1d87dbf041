import json, os, sys
from flask import Flask, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

app = Flask(__name__)
hook = Webhook(os.environ["CMC_RELAY_SECRET"])
seen = set()  # in production: a table with a unique webhook-id column


@app.post("/cmc-webhooks")
def cmc_webhooks():
    try:  # the signature covers the raw bytes: verify them before parsing
        hook.verify(request.get_data(), request.headers, json_parse=False)
    except WebhookVerificationError:
        return "", 401
    webhook_id = request.headers["webhook-id"]
    if webhook_id in seen:  # a repeat (an attempt whose 200 was lost)
        return "", 200
    if request.mimetype == "multipart/form-data":  # a mail with large attachments
        payload = json.loads(request.form["payload"])
        files = {name: f.read() for name, f in request.files.items()}
    else:
        payload = json.loads(request.get_data())
        files = {}
    handle(payload, files)
    seen.add(webhook_id)
    return "", 200


def handle(payload, files):
    """Your code. This one prints a line per event and per mail."""
    if payload["type"] == "event":
        event = payload["event"]
        line = f"event {payload['event_type']} {event.get('status')} {event.get('to')}"
    else:  # "inbound"
        mail = payload["mail"]
        names = [a["filename"] for a in mail["attachments"]]
        line = f"mail to {mail['envelope_to']} subject {mail['subject']} attachments {names} in parts {sorted(files)}"
    sys.stdout.write(line + "\n")  # one write: requests run on several threads
    sys.stdout.flush()
