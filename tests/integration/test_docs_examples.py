"""The webhook receivers in docs/examples/ accept what the dialer really sends, and reject what
they must.

Each example runs as its own process (as a reader would run it). The dialer's WebhookService,
on the test Redis, delivers a real `screening.completed` event to it through the production
path (signing, headers, pooled client, URL guard with loopback allowed); the delivery must come
back `delivered`. Then the same signed bytes are sent again (a duplicate: 2xx, not processed
twice), and tampered copies (body changed, wrong secret, stale timestamp, missing headers) must
be refused with 401.

The Python example always runs. The JavaScript one (Node's crypto only, no npm packages) runs
when `node` is on PATH and is skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from dialer import events
from dialer.keys import Keys
from dialer.models import AttemptRecord, CandidateData, KnockoutAnswer, OpenAnswer, Status
from dialer.webhooks import LOOPBACK_NETWORKS, WebhookService, generate_secret, signed_headers

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
START_TIMEOUT_S = 20.0
LINE_TIMEOUT_S = 10.0


@dataclass
class Receiver:
    """An example receiver running as a child process; its stdout is read line by line."""

    proc: subprocess.Popen[str]
    url: str
    lines: queue.Queue[str]

    def next_event(self) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=LINE_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError("the example printed nothing for the last request") from None
        return dict(json.loads(line))


def _command(language: str) -> list[str]:
    if language == "python":
        return [sys.executable, str(EXAMPLES / "verify_webhook.py")]
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the JavaScript example (node:crypto only) cannot run")
    return [node, str(EXAMPLES / "verify_webhook.mjs")]


def _start(language: str, secret: str) -> Receiver:
    env = {**os.environ, "WEBHOOK_SECRET": secret, "HOST": "127.0.0.1", "PORT": "0"}
    proc = subprocess.Popen(
        _command(language),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = lines.get(timeout=START_TIMEOUT_S)
    except queue.Empty:
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise AssertionError(f"{language} example did not start: {err}") from None
    match = re.fullmatch(r"listening on (http://[\d.]+:\d+/)", first)
    assert match, f"unexpected first line from the {language} example: {first!r}"
    return Receiver(proc, match.group(1), lines)


@pytest.fixture(params=["python", "node"])
def example(request: pytest.FixtureRequest) -> Iterator[tuple[Receiver, str]]:
    secret = generate_secret()
    receiver = _start(request.param, secret)
    try:
        yield receiver, secret
    finally:
        receiver.proc.terminate()
        try:
            receiver.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            receiver.proc.kill()
            receiver.proc.wait(timeout=5)


def final_result() -> CandidateData:
    """A final CandidateData as the results consumer produces it; the non-ASCII text checks
    that the examples verify the raw UTF-8 bytes."""
    at = datetime(2026, 3, 3, 9, 12, tzinfo=UTC)
    return CandidateData(
        call_id="abc-123",
        status=Status.COMPLETED,
        consent_given=True,
        passed_knockout=True,
        knockout_answers=[
            KnockoutAnswer(
                question_id="q1",
                internal_id="crm_field_1",
                question_text="Mag je wettelijk werken in België?",
                result="pass",
                raw_answer="ja, ik heb een werkvergunning — sinds 2019",
            )
        ],
        open_answers=[
            OpenAnswer(
                question_id="oq1",
                internal_id="crm_field_3",
                question_text="Waarom wil je hier werken?",
                answer_summary="Houdt van bakken; wil vroeg beginnen.",
            )
        ],
        chosen_timeslot="dinsdag 4 maart om 10 uur",
        attempt=1,
        attempts=[AttemptRecord(attempt=1, at=at, outcome="completed", duration_s=184.0)],
        language="nl",
        phone_number="+32******456",
        metadata={"crm_id": "CRM-1000"},
    )


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers})


def test_example_accepts_a_real_delivery_and_rejects_tampering(
    example: tuple[Receiver, str], r: redis.Redis
) -> None:
    receiver, secret = example
    now = datetime.now(UTC)
    service = WebhookService(r, Keys(), allow_networks=LOOPBACK_NETWORKS, timeout_s=5.0)
    try:
        service.endpoints.add(
            receiver.url + "hooks/screening", secret=secret, events=[events.COMPLETED]
        )
        result = final_result()
        created = service.emit(
            events.COMPLETED,
            result.model_dump(mode="json"),
            now,
            event_id=events.event_id(result.call_id, result.attempt, events.COMPLETED),
        )
        assert len(created) == 1

        # 1. The real delivery, sent by the dialer's own delivery code, is accepted.
        outcome = service.deliver(created[0], now)
        assert outcome.result == "delivered", outcome
        delivery = service.get(created[0])
        seen = receiver.next_event()
        assert seen == {
            "event": "accepted",
            "webhook_id": delivery.message_id,
            "type": "screening.completed",
            "call_id": "abc-123",
            "status": "completed",
        }
        body = delivery.payload.encode()
        assert "België" in delivery.payload  # sent as UTF-8, not \u-escaped: raw bytes matter

        # 2. A retry of the same delivery (same webhook-id, fresh timestamp): 2xx, not re-done.
        fresh = signed_headers(secret, delivery.message_id, datetime.now(UTC), delivery.payload)
        response = post(receiver.url, body, fresh)
        assert 200 <= response.status_code < 300
        assert receiver.next_event() == {"event": "duplicate", "webhook_id": delivery.message_id}

        # 3. Tampered or forged copies are refused.
        tampered = body.replace(b'"status":"completed"', b'"status":"knockout_failed"')
        assert tampered != body
        stale = signed_headers(
            secret, "msg_stale", datetime.now(UTC) - timedelta(minutes=10), delivery.payload
        )
        forged = signed_headers(
            generate_secret(), "msg_forged", datetime.now(UTC), delivery.payload
        )
        unsigned = {k: v for k, v in fresh.items() if k != "webhook-signature"}
        for case, (payload, headers) in {
            "body changed": (tampered, fresh),
            "stale timestamp": (body, stale),
            "wrong secret": (body, forged),
            "no signature": (body, unsigned),
        }.items():
            response = post(receiver.url, payload, headers)
            assert response.status_code == 401, f"{case}: {response.status_code}"
            assert receiver.next_event()["event"] == "rejected", case
    finally:
        service.close()
