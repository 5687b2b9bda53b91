"""ResultPublisher against a real embedded redis-server that the test stops and starts again:
sent while up, spooled to disk while down (quickly, atomically), flushed oldest first when back.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from dialer.embedded_redis import EmbeddedRedis
from dialer.messages import RESULTS_QUEUE, RESULTS_TASK, ResultMessage
from dialer.models import CandidateData, KnockoutAnswer, Status
from dialer.results_queue import ResultPublisher

AT = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def publisher(server: EmbeddedRedis, tmp_path: Path) -> Iterator[ResultPublisher]:
    pub = ResultPublisher(server.url, tmp_path / "spool", connect_timeout=1.0)
    try:
        yield pub
    finally:
        pub.close()


def _message(call_id: str, attempt: int = 1, status: Status = Status.COMPLETED) -> ResultMessage:
    data = CandidateData(
        call_id=call_id,
        status=status,
        attempt=attempt,
        consent_given=True,
        passed_knockout=True,
        knockout_answers=[
            KnockoutAnswer(question_id="q1", result="pass", raw_answer="ja, ik heb een vergunning")
        ],
        phone_number="+32*****789",
        language="nl",
    )
    return ResultMessage.from_agent(data, AT)


def _queued(url: str) -> list[dict[str, Any]]:
    """Decode every Celery message waiting on the results queue (oldest first)."""
    client = redis.Redis.from_url(url)
    try:
        raw = client.lrange(RESULTS_QUEUE, 0, -1)
    finally:
        client.close()
    out = []
    for item in reversed(raw):  # kombu LPUSHes, workers BRPOP: the tail is the oldest
        envelope = json.loads(item)
        assert envelope["headers"]["task"] == RESULTS_TASK
        assert envelope["content-type"] == "application/json"
        args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        assert args == []
        assert set(kwargs) == {"message"}
        out.append(kwargs["message"])
    return out


def test_publish_sends_the_celery_task_with_a_json_message(
    publisher: ResultPublisher, server: EmbeddedRedis
) -> None:
    msg = _message("call-1")
    assert publisher.publish(msg) == "sent"
    queued = _queued(server.url)
    assert len(queued) == 1
    assert ResultMessage.model_validate(queued[0]) == msg
    assert publisher.pending() == []


def test_redis_down_spools_then_flush_delivers_oldest_first(
    publisher: ResultPublisher, server: EmbeddedRedis
) -> None:
    server.stop()

    started = time.monotonic()
    assert publisher.publish(_message("call-a", 1)) == "spooled"
    assert publisher.publish(_message("call-b", 2, Status.INCOMPLETE)) == "spooled"
    assert time.monotonic() - started < 5, "an unreachable broker must spool quickly"

    files = publisher.pending()
    assert [f.name.split("-", 2)[2] for f in files] == ["call-a-1.json", "call-b-2.json"]
    # Atomic writes: complete JSON documents, no temporary files left behind.
    assert ResultMessage.model_validate_json(files[0].read_text()) == _message("call-a", 1)
    assert not [p for p in files[0].parent.iterdir() if p.name.endswith(".tmp")]

    # Still down: nothing is sent, nothing is deleted.
    assert publisher.flush() == 0
    assert len(publisher.pending()) == 2

    server.start()
    assert publisher.flush() == 2
    assert publisher.pending() == []
    queued = _queued(server.url)
    assert [m["call_id"] for m in queued] == ["call-a", "call-b"]
    assert ResultMessage.model_validate(queued[1]) == _message("call-b", 2, Status.INCOMPLETE)

    # Publishing works again on the same publisher after the outage.
    assert publisher.publish(_message("call-c")) == "sent"
    assert [m["call_id"] for m in _queued(server.url)] == ["call-a", "call-b", "call-c"]


def test_unreadable_spool_file_is_set_aside_and_the_rest_flushed(
    publisher: ResultPublisher, server: EmbeddedRedis
) -> None:
    server.stop()
    assert publisher.publish(_message("call-x")) == "spooled"
    bad = publisher.spool_dir / "00000000000000000001-000000-garbage-1.json"
    bad.write_text("{not json")
    server.start()

    assert publisher.flush() == 1
    assert publisher.pending() == []
    assert (publisher.spool_dir / (bad.name + ".bad")).exists()
    assert [m["call_id"] for m in _queued(server.url)] == ["call-x"]


def test_flush_with_an_empty_or_missing_spool_is_a_no_op(publisher: ResultPublisher) -> None:
    assert not publisher.spool_dir.exists()
    assert publisher.flush() == 0
    publisher.spool_dir.mkdir(parents=True)
    assert publisher.flush() == 0


def test_a_second_flusher_on_the_same_spool_backs_off(
    publisher: ResultPublisher, server: EmbeddedRedis, tmp_path: Path
) -> None:
    server.stop()
    assert publisher.publish(_message("call-l")) == "spooled"
    server.start()
    other = ResultPublisher(server.url, publisher.spool_dir, connect_timeout=1.0)
    try:
        with publisher._flush_lock() as acquired:
            assert acquired
            assert other.flush() == 0  # the lock is held: no double send
        assert other.flush() == 1
    finally:
        other.close()
    assert [m["call_id"] for m in _queued(server.url)] == ["call-l"]
