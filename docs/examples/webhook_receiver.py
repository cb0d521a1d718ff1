#!/usr/bin/env python3
"""A receiver for dispatch-api's webhooks, in Python's standard library.

It checks each delivery's Standard Webhooks signature with the endpoint's
secret (the `secret` of the answer to POST /v1/webhooks), refuses stale or
forged ones (401), drops repeats by `webhook-id` (deliveries are at least
once: a retry or a replay sends the same id again), and prints each new
event as one JSON line. Answer 2xx quickly and do the work elsewhere:
the service waits at most 10 s, then retries.

    WEBHOOK_SECRET=whsec_... python3 webhook_receiver.py 8000

Run by tests/api/webhooks/example.rs.
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import sys
import time

SECRET = os.environ["WEBHOOK_SECRET"]
KEY = base64.b64decode(SECRET[len("whsec_"):] if SECRET.startswith("whsec_") else SECRET)
TOLERANCE_SECONDS = 5 * 60
SEEN = set()  # a real receiver keeps these in its database, with the work


def verified(headers, body):
    """Whether the delivery is signed with our secret and recent."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not timestamp.isdigit():
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(sig[len("v1,"):], expected)
        for sig in signatures.split(" ")
        if sig.startswith("v1,")
    )


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(min(length, 1 << 20))
        if not verified(self.headers, body):
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)  # a CloudEvent (schemas/cloudevent.schema.json)
        if event["id"] not in SEEN:
            SEEN.add(event["id"])
            print(json.dumps({
                "id": event["id"],
                "type": event["type"],
                "subject": event["subject"],
                "globalposition": event["globalposition"],
            }), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()
