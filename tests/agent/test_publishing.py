"""A screening that ends while Redis is down: its result is spooled, nothing is lost, and the
next job's flush, the next successful publish, the spooling job's drain or the agent server's
periodic flusher delivers it. A result the queue lost after it was sent is sent again until the
results consumer's receipt shows it arrived."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest
import redis

from agent.publishing import PublisherSink, SpoolFlusher
from agent.simulate import TextScreening, run_text_screening_detailed
from dialer.embedded_redis import EmbeddedRedis
from dialer.keys import Keys
from dialer.messages import RESULTS_QUEUE, ResultMessage
from dialer.models import Status
from dialer.results_queue import ResultPublisher
from tests.agent.requests import dispatch_metadata
from tests.agent.scripted_llm import ScriptedLLM, call


def _queued(url: str) -> list[ResultMessage]:
    client = redis.Redis.from_url(url)
    try:
        raw = client.lrange(RESULTS_QUEUE, 0, -1)
    finally:
        client.close()
    messages = []
    for item in reversed(raw):
        _args, kwargs, _embed = json.loads(base64.b64decode(json.loads(item)["body"]))
        messages.append(ResultMessage.model_validate(kwargs["message"]))
    return messages


def _declined_screening(sink: PublisherSink) -> TextScreening:
    """A short screening (consent declined) whose result goes to `sink`."""
    scripted = ScriptedLLM([call("record_consent", consent_given=False)])
    return asyncio.run(
        run_text_screening_detailed(dispatch_metadata("nl"), scripted, ["Nee."], sink=sink)
    )


def test_result_spooled_while_redis_is_down_is_delivered_when_it_is_back(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    publisher = ResultPublisher(server.url, tmp_path / "spool", connect_timeout=1.0)
    sink = PublisherSink(publisher)
    try:
        server.stop()
        run = _declined_screening(sink)
        assert run.result.status is Status.NOT_INTERESTED
        assert sink.outcomes == ["spooled"]
        [spooled] = publisher.pending()
        assert ResultMessage.model_validate_json(spooled.read_text()).result == run.result

        server.start()
        assert asyncio.run(sink.flush()) == 1  # what every job does first
        assert publisher.pending() == []
        [message] = _queued(server.url)
        assert message.result == run.result

        # A later result goes straight through, and the queue keeps the order.
        scripted = ScriptedLLM([call("do_not_call_again")])
        later = asyncio.run(
            run_text_screening_detailed(
                dispatch_metadata("nl", attempt=2), scripted, ["Nooit meer bellen."], sink=sink
            )
        )
        assert sink.outcomes == ["spooled", "sent"]
        assert [m.attempt for m in _queued(server.url)] == [1, 2]
        assert _queued(server.url)[1].result == later.result
    finally:
        publisher.close()
        server.stop()


def test_the_job_that_spooled_keeps_trying_until_redis_is_back(tmp_path: Path) -> None:
    """No later call needed: `drain` (what the agent's job does before it ends when its result
    was spooled) sends it once Redis answers again."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    publisher = ResultPublisher(server.url, tmp_path / "spool", connect_timeout=0.5)
    sink = PublisherSink(publisher)
    try:
        server.stop()
        run = _declined_screening(sink)
        assert sink.spooled and len(publisher.pending()) == 1

        async def outage_ends_while_draining() -> int:
            draining = asyncio.create_task(sink.drain(20.0, first_delay_s=0.2, max_delay_s=0.5))
            await asyncio.sleep(1.0)
            assert not draining.done(), "drain gave up while Redis was still down"
            await asyncio.to_thread(server.start)
            return await draining

        assert asyncio.run(outage_ends_while_draining()) == 0
        assert publisher.pending() == []
        [message] = _queued(server.url)
        assert message.result == run.result
    finally:
        publisher.close()
        server.stop()


def test_drain_gives_up_after_its_time_and_keeps_the_file(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    server.stop()
    publisher = ResultPublisher(server.url, tmp_path / "spool", connect_timeout=0.2)
    sink = PublisherSink(publisher)
    try:
        _declined_screening(sink)
        assert asyncio.run(sink.drain(0.6, first_delay_s=0.2, max_delay_s=0.2)) == 1
        assert len(publisher.pending()) == 1  # still on disk for the next job / flush-spool
    finally:
        publisher.close()


def test_the_agent_server_sends_spooled_results_without_any_further_call(tmp_path: Path) -> None:
    """The job that spooled a result may be long gone (livekit-agents ends a job soon after its
    room closes); the server process's flusher sends the result once Redis is back."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    server.stop()
    job_publisher = ResultPublisher(server.url, tmp_path / "spool", connect_timeout=0.2)
    run = _declined_screening(PublisherSink(job_publisher))
    job_publisher.close()
    flusher = SpoolFlusher(
        ResultPublisher(server.url, tmp_path / "spool", connect_timeout=0.2), interval_s=0.2
    ).start()
    try:
        time.sleep(0.6)  # a few rounds while Redis is still down: the file stays
        assert len(flusher.publisher.pending()) == 1
        server.start()
        deadline = time.monotonic() + 10
        while flusher.publisher.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flusher.publisher.pending() == []
        [message] = _queued(server.url)
        assert message.result == run.result
    finally:
        flusher.stop()
        flusher.publisher.close()
        server.stop()


def test_the_agent_server_sends_a_result_the_queue_lost_until_the_consumer_receipts_it(
    tmp_path: Path,
) -> None:
    """Sent, then lost by the broker (kombu's BRPOP window: here the message is simply taken
    off the queue): the server's flusher sends the same message again after the confirmation
    delay, and deletes the job's copy once the results consumer's receipt exists."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    client = redis.Redis.from_url(server.url)
    job_publisher = ResultPublisher(server.url, tmp_path / "spool", connect_timeout=0.5)
    sink = PublisherSink(job_publisher)
    flusher = SpoolFlusher(
        ResultPublisher(server.url, tmp_path / "spool", connect_timeout=0.5, confirm_after_s=0.4),
        interval_s=0.1,
    )
    try:
        run = _declined_screening(sink)
        assert sink.outcomes == ["sent"]
        [original] = _queued(server.url)
        assert client.rpop(RESULTS_QUEUE) is not None  # lost on the way to a worker
        assert len(job_publisher.unconfirmed()) == 1
        flusher.start()
        deadline = time.monotonic() + 10
        while not client.llen(RESULTS_QUEUE) and time.monotonic() < deadline:
            time.sleep(0.05)
        [again] = _queued(server.url)
        assert again == original and again.result == run.result
        client.set(Keys().result_receipt(again.call_id, again.attempt), "1")  # the consumer's
        while job_publisher.outstanding() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job_publisher.outstanding() == [] and job_publisher.quarantined() == []
        assert len(_queued(server.url)) == 1
    finally:
        flusher.stop()
        flusher.publisher.close()
        job_publisher.close()
        client.close()
        server.stop()


def test_flush_spool_command_reports_unsent_and_unconfirmed_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.worker import flush_spool
    from dialer.keys import Keys

    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    server.stop()
    spool = tmp_path / "spool"
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("DIALER_SPOOL_DIR", str(spool))
    publisher = ResultPublisher(server.url, spool, connect_timeout=0.2)
    run = _declined_screening(PublisherSink(publisher))
    publisher.close()
    try:
        assert flush_spool() == 1  # Redis still down: the result waits, unsent
        assert "1 still unsent" in capsys.readouterr().out
        server.start()
        assert flush_spool() == 1  # sent now, but no consumer has confirmed it yet
        assert "0 still unsent, 1 sent but not yet confirmed" in capsys.readouterr().out
        client = redis.Redis.from_url(server.url)
        client.set(Keys().result_receipt(run.result.call_id, run.result.attempt), "1")
        client.close()
        assert flush_spool() == 0
        assert "0 still unsent, 0 sent but not yet confirmed" in capsys.readouterr().out
    finally:
        server.stop()
