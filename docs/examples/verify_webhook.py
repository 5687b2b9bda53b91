"""Receive screening-dialer webhooks and verify them (Standard Webhooks), in Python.

    pip install standardwebhooks
    WEBHOOK_SECRET=whsec_... python verify_webhook.py        # http://127.0.0.1:8787/
    HOST=0.0.0.0 PORT=9000 WEBHOOK_SECRET=whsec_... python verify_webhook.py

Register the URL with `dialer webhooks add https://your-host/path` (or POST /v1/webhooks) and
put the `whsec_...` secret it prints into WEBHOOK_SECRET. PORT=0 picks a free port; the first
line printed says which.

What a receiver has to get right, all shown below:

1. Verify the signature over the RAW body bytes, before parsing JSON (re-serialised JSON is
   not byte-identical and will not verify). `Webhook.verify` also rejects a
   `webhook-timestamp` more than 5 minutes off your clock (replayed or forged requests).
2. De-duplicate by the `webhook-id` header: every retry of one delivery carries the same id.
   Answer 2xx to a duplicate, but do not act on it twice. (This example keeps ids in memory;
   in production store them with a unique constraint, in the same transaction as the effect.)
3. Answer 2xx quickly (within 15 s) and do slow work afterwards. Anything else is retried:
   5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. Never answer 410 unless you want the endpoint
   disabled: 410 Gone switches it off on the sender's side.

Each event is printed as one JSON line, so you can see what arrived.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

SECRET = os.environ.get("WEBHOOK_SECRET", "")
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8787"))
MAX_BODY = 5 * 1024 * 1024

_seen: set[str] = set()
_seen_lock = threading.Lock()


def log(**fields: Any) -> None:
    print(json.dumps(fields, ensure_ascii=False), flush=True)


def first_time(webhook_id: str) -> bool:
    """True the first time a webhook-id is seen (replace with a unique-keyed table)."""
    with _seen_lock:
        if webhook_id in _seen:
            return False
        _seen.add(webhook_id)
        return True


def handle_event(webhook_id: str, event: dict[str, Any]) -> None:
    """Your code: update the CRM. `event` is {"type", "timestamp", "data"}."""
    kind, data = event["type"], event["data"]
    if kind == "screening.completed":  # data: the final CandidateData
        log(event="accepted", webhook_id=webhook_id, type=kind,
            call_id=data["call_id"], status=data["status"])  # fmt: skip
    elif kind == "screening.attempt":  # data: call_id, attempt, outcome, sip_status_code, at
        log(event="accepted", webhook_id=webhook_id, type=kind,
            call_id=data["call_id"], outcome=data["outcome"])  # fmt: skip
    elif kind == "screening.retry_scheduled":  # data: call_id, attempt, retry_at, reason
        log(event="accepted", webhook_id=webhook_id, type=kind,
            call_id=data["call_id"], retry_at=data["retry_at"])  # fmt: skip
    else:  # "webhook.test" from `dialer webhooks test`, or a type added later: accept it
        log(event="accepted", webhook_id=webhook_id, type=kind)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self.reply(413, "body too large")
            return
        body = self.rfile.read(length)  # the raw bytes: verify these, not parsed JSON
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            event = Webhook(SECRET).verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            log(event="rejected", webhook_id=headers.get("webhook-id"), reason=str(exc))
            self.reply(401, "invalid signature")
            return
        webhook_id = headers["webhook-id"]
        if not first_time(webhook_id):
            log(event="duplicate", webhook_id=webhook_id)
            self.reply(200, "already processed")
            return
        handle_event(webhook_id, event)
        self.reply(204)

    def reply(self, status: int, text: str = "") -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # keep stdout to the JSON lines
        pass


def main() -> None:
    if not SECRET.startswith("whsec_"):
        sys.exit("set WEBHOOK_SECRET to the endpoint's whsec_... secret")
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    print(f"listening on http://{HOST}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
