"""A real Standard Webhooks receiver on 127.0.0.1, in a background thread.

Used by the integration tests and the demo (and handy to point a local endpoint at):

    with WebhookReceiver(secret, out_dir=Path("received")) as rx:
        service.endpoints.add(rx.url("/crm"), secret=secret)
        rx.script("/crm", 500, 500, Reply(429, retry_after="120"))   # then 200s
        ...
        rx.wait_for(1, path="/crm")

Every request is verified with `standardwebhooks.Webhook(secret).verify(body, headers)` (a
failed verification is answered 401 and recorded with `verified=False`). Replies are scripted per
path (status, Retry-After, delay, Location); once a path's script is used up it answers the
default (200). Accepted deliveries are de-duplicated by `webhook-id`, as a real receiver should,
and written to `out_dir/<webhook-id>.json` when an out_dir is given.

Run standalone: `DIALER_RECEIVER_SECRET=whsec_... python -m dialer.webhooks.receiver --out DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    `trickle_gap_s` > 0 sends the reply one byte at a time with that pause between bytes, like
    a stalling peer that never goes quiet long enough for a per-read timeout: `trickle="all"`
    trickles the status line and headers too, `"body"` only the body."""

    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    location: str | None = None
    body: bytes = b""
    trickle_gap_s: float = 0.0
    trickle: Literal["all", "body"] = "all"


@dataclass(frozen=True)
class Received:
    path: str
    webhook_id: str | None
    timestamp: str | None
    headers: dict[str, str]
    body: bytes
    received_at: float
    verified: bool
    status: int
    error: str | None = None
    duplicate: bool = False

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def accepted(self) -> bool:
        return self.verified and 200 <= self.status < 300


@dataclass
class _State:
    secrets: dict[str, str] = field(default_factory=dict)  # path -> secret ("*" for any path)
    scripts: dict[str, deque[Reply]] = field(default_factory=lambda: defaultdict(deque))
    received: list[Received] = field(default_factory=list)
    accepted_ids: set[tuple[str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


class WebhookReceiver:
    def __init__(
        self,
        secret: str | Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        out_dir: Path | None = None,
        default: Reply = Reply(),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`secret`: one secret for every path, or {path: secret}; None accepts unverified.
        `tls`: a server-side SSLContext to serve https instead of http."""
        self._state = _State()
        if isinstance(secret, str):
            self._state.secrets["*"] = secret
        elif secret is not None:
            self._state.secrets.update(secret)
        self.out_dir = out_dir
        self.default = default
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="webhook-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = str(self._server.server_address[0])
        return f"{self._scheme}://{host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # -- scripting -------------------------------------------------------------------------------

    def set_secret(self, path: str, secret: str) -> None:
        with self._state.lock:
            self._state.secrets[path] = secret

    def script(self, path: str, *replies: Reply | int) -> None:
        """Queue answers for `path` (an int is a bare status code); then the default."""
        with self._state.lock:
            self._state.scripts[path].extend(
                r if isinstance(r, Reply) else Reply(status=r) for r in replies
            )

    def clear(self) -> None:
        with self._state.lock:
            self._state.scripts.clear()
            self._state.received.clear()
            self._state.accepted_ids.clear()

    # -- what arrived ----------------------------------------------------------------------------

    def received(self, path: str | None = None) -> list[Received]:
        with self._state.lock:
            return [r for r in self._state.received if path is None or r.path == path]

    def accepted(self, path: str | None = None) -> list[Received]:
        """Verified, answered 2xx, first of each webhook-id (what a receiver would act on)."""
        return [r for r in self.received(path) if r.accepted and not r.duplicate]

    def wait_for(
        self, count: int, *, path: str | None = None, timeout: float = 10.0
    ) -> list[Received]:
        """Block until `count` deliveries were accepted (de-duplicated); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._state.changed:
            while True:
                got = [
                    r
                    for r in self._state.received
                    if (path is None or r.path == path) and r.accepted and not r.duplicate
                ]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(got)} of {count} webhook deliveries arrived")
                self._state.changed.wait(left)

    # -- the HTTP side ---------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so the sender's pool is exercised
            timeout = 60

            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = h.headers.get("content-length")
        if length is None or not length.isdigit():
            h.close_connection = True  # the unread body would be taken for the next request
            self._respond(h, Reply(411, body=b"content-length required"))
            return
        body = h.rfile.read(int(length))
        path = h.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in h.headers.items()}
        state = self._state
        with state.lock:
            secret = state.secrets.get(path, state.secrets.get("*"))
        verified, error = False, None
        if secret is None:
            error = "no secret configured for this path"
        else:
            try:
                Webhook(secret).verify(body, headers)
                verified = True
            except (WebhookVerificationError, ValueError) as exc:
                error = f"signature verification failed: {exc}"
        if secret is not None and not verified:
            reply = Reply(401, body=(error or "").encode())
        else:
            with state.lock:
                script = state.scripts.get(path)
                reply = script.popleft() if script else self.default
        if reply.delay_s:
            time.sleep(reply.delay_s)
        webhook_id = headers.get("webhook-id")
        duplicate = False
        with state.changed:
            if verified and 200 <= reply.status < 300 and webhook_id:
                duplicate = (path, webhook_id) in state.accepted_ids
                state.accepted_ids.add((path, webhook_id))
            record = Received(
                path=path,
                webhook_id=webhook_id,
                timestamp=headers.get("webhook-timestamp"),
                headers=headers,
                body=body,
                received_at=time.time(),
                verified=verified,
                status=reply.status,
                error=error,
                duplicate=duplicate,
            )
            state.received.append(record)
            state.changed.notify_all()
        if record.accepted and not duplicate and self.out_dir is not None:
            self._write(record)
        self._respond(h, reply)

    def _write(self, record: Received) -> None:
        assert self.out_dir is not None
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", record.webhook_id or "unknown")
        target = self.out_dir / f"{name}.json"
        # One temporary file per writer: the same message (same webhook-id, same bytes) can
        # arrive for two endpoint paths at once, and a shared temporary name made one of the two
        # handlers fail before answering, so the sender retried a delivery that had arrived.
        tmp = self.out_dir / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            document: Any = record.json()
        except ValueError:
            document = {"raw": record.body.decode("utf-8", "replace")}
        tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
        tmp.replace(target)

    @staticmethod
    def _respond(h: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.trickle_gap_s > 0:
            WebhookReceiver._trickle(h, reply)
            return
        try:
            h.send_response(reply.status)
            if reply.retry_after is not None:
                h.send_header("Retry-After", reply.retry_after)
            if reply.location is not None:
                h.send_header("Location", reply.location)
            h.send_header("Content-Length", str(len(reply.body)))
            h.end_headers()
            if reply.body:
                h.wfile.write(reply.body)
        except OSError:  # the sender gave up (timeout): nothing to answer
            h.close_connection = True

    @staticmethod
    def _trickle(h: BaseHTTPRequestHandler, reply: Reply) -> None:
        phrase = h.responses.get(reply.status, ("",))[0]
        head = [
            f"HTTP/1.1 {reply.status} {phrase}",
            f"Content-Length: {len(reply.body)}",
            "Connection: close",
        ]
        if reply.retry_after is not None:
            head.append(f"Retry-After: {reply.retry_after}")
        if reply.location is not None:
            head.append(f"Location: {reply.location}")
        header_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        h.close_connection = True  # whatever the sender makes of it, this connection is spent
        try:
            if reply.trickle == "body":
                h.wfile.write(header_bytes)
                h.wfile.flush()
                slow = reply.body
            else:
                slow = header_bytes + reply.body
            for i in range(len(slow)):
                time.sleep(reply.trickle_gap_s)
                h.wfile.write(slow[i : i + 1])
                h.wfile.flush()
        except OSError:  # the sender gave up: stop trickling
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Verify and record Standard Webhooks locally.")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument(
        "--secret",
        default=os.environ.get("DIALER_RECEIVER_SECRET"),
        help="the endpoint's whsec_ secret (default: $DIALER_RECEIVER_SECRET)",
    )
    parser.add_argument("--out", type=Path, default=Path("received-webhooks"))
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("give --secret or set DIALER_RECEIVER_SECRET")
    with WebhookReceiver(args.secret, port=args.port, out_dir=args.out) as rx:
        print(f"listening on {rx.base_url}, writing verified payloads to {args.out}/")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
