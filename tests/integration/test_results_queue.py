"""ResultPublisher against a real embedded redis-server that the test stops and starts again:
sent while up, spooled to disk while down (quickly, atomically), flushed oldest first when back;
every result's copy kept until the results consumer's receipt exists, sent again when the queue
lost it, quarantined (never deleted) when no receipt ever comes.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from dialer.embedded_redis import EmbeddedRedis
from dialer.keys import Keys
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


# -- copies kept until the results consumer's receipt ----------------------------------------


def _receipt(server: EmbeddedRedis, msg: ResultMessage) -> None:
    """What the results consumer leaves once it has processed `msg` (dialer.results)."""
    client = redis.Redis.from_url(server.url)
    try:
        client.set(Keys().result_receipt(msg.call_id, msg.attempt), "1", ex=60)
    finally:
        client.close()


def _steal(server: EmbeddedRedis) -> dict[str, Any]:
    """Take the oldest message off the results queue, as a worker's BRPOP does, and drop it:
    kombu loses a message so when the worker dies before recording it as unacknowledged."""
    client = redis.Redis.from_url(server.url)
    try:
        raw = client.rpop(RESULTS_QUEUE)
    finally:
        client.close()
    assert raw is not None, "nothing on the results queue"
    _args, kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
    message: dict[str, Any] = kwargs["message"]
    return message


def test_a_sent_result_keeps_its_copy_until_the_consumer_s_receipt_exists(
    publisher: ResultPublisher, server: EmbeddedRedis
) -> None:
    msg = _message("call-r")
    assert publisher.publish(msg) == "sent"
    [copy] = publisher.unconfirmed()
    assert copy.parent == publisher.sent_dir
    assert ResultMessage.model_validate_json(copy.read_text()) == msg
    assert publisher.flush() == 0
    assert publisher.unconfirmed() == [copy], "no receipt yet: the copy stays"
    _receipt(server, msg)
    assert publisher.flush() == 0
    assert publisher.outstanding() == [] and not copy.exists()
    assert len(_queued(server.url)) == 1, "sent once"


def test_a_result_the_queue_lost_is_sent_again_after_the_confirmation_delay(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    publisher = ResultPublisher(
        server.url, tmp_path / "spool", connect_timeout=1.0, confirm_after_s=0.5
    )
    try:
        msg = _message("call-lost", 2)
        kept = _message("call-kept", 1)
        assert publisher.publish(msg) == "sent"
        assert publisher.publish(kept) == "sent"
        assert _steal(server) == msg.model_dump(mode="json")
        assert _steal(server) == kept.model_dump(mode="json")
        _receipt(server, kept)  # this one reached the consumer
        assert publisher.flush() == 0, "not before the confirmation delay"
        assert _queued(server.url) == []
        assert [p.name.split("-", 2)[2] for p in publisher.unconfirmed()] == ["call-lost-2.json"]
        time.sleep(0.6)
        assert publisher.flush() == 1
        [again] = _queued(server.url)
        assert ResultMessage.model_validate(again) == msg, "the same message"
        assert publisher.flush() == 0, "sent again only after another delay"
        _receipt(server, msg)
        time.sleep(0.6)
        assert publisher.flush() == 0
        assert publisher.outstanding() == []
        assert len(_queued(server.url)) == 1
    finally:
        publisher.close()


def test_a_copy_without_a_receipt_for_too_long_is_quarantined_never_deleted(
    server: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = ResultPublisher(
        server.url,
        tmp_path / "spool",
        connect_timeout=1.0,
        confirm_after_s=0.2,
        give_up_after_s=0.5,
    )
    try:
        msg = _message("call-never")
        assert publisher.publish(msg) == "sent"
        time.sleep(0.3)
        assert publisher.flush() == 1  # sent again: not given up yet
        time.sleep(0.3)
        with caplog.at_level(logging.ERROR, logger="dialer.results_queue"):
            assert publisher.flush() == 0
        assert publisher.outstanding() == []
        [kept] = publisher.quarantined()
        assert ResultMessage.model_validate_json(kept.read_text()) == msg
        assert "result call-never attempt 1: no receipt" in caplog.text
        assert "given up" in caplog.text
    finally:
        publisher.close()


def test_while_redis_is_down_copies_wait_and_nothing_is_given_up(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    publisher = ResultPublisher(
        server.url, tmp_path / "spool", connect_timeout=0.3, confirm_after_s=0.1
    )
    try:
        msg = _message("call-w")
        assert publisher.publish(msg) == "sent"
        _steal(server)
        server.stop()
        time.sleep(0.2)
        assert publisher.flush() == 0
        assert len(publisher.unconfirmed()) == 1
        server.start()
        assert publisher.flush() == 1
        assert [m["call_id"] for m in _queued(server.url)] == ["call-w"]
    finally:
        publisher.close()


def test_a_result_spooled_in_an_outage_waits_for_its_receipt_once_sent(
    publisher: ResultPublisher, server: EmbeddedRedis
) -> None:
    server.stop()
    msg = _message("call-o")
    assert publisher.publish(msg) == "spooled"
    assert publisher.unconfirmed() == [] and len(publisher.pending()) == 1
    server.start()
    assert publisher.flush() == 1
    assert publisher.pending() == [] and len(publisher.unconfirmed()) == 1
    _receipt(server, msg)
    publisher.flush()
    assert publisher.outstanding() == []


def test_a_result_is_still_sent_when_its_copy_cannot_be_written(
    server: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_folder = tmp_path / "spool-file"
    not_a_folder.write_text("")
    publisher = ResultPublisher(server.url, not_a_folder, connect_timeout=1.0)
    try:
        with caplog.at_level(logging.ERROR, logger="dialer.results_queue"):
            assert publisher.publish(_message("call-nc")) == "sent"
        assert "could not keep a copy of result call-nc attempt 1" in caplog.text
        assert [m["call_id"] for m in _queued(server.url)] == ["call-nc"]
    finally:
        publisher.close()
