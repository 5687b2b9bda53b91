"""The voice agent's result publisher (`dialer.results_queue.ResultPublisher`) sends through a
`sentinel://` URL as the workers do (docs/OPERATIONS.md, Redis Sentinel): the result lands on
the master's `results` queue instead of waiting in the spool."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from dialer.embedded_redis import EmbeddedRedis
from dialer.messages import ResultMessage
from dialer.models import CandidateData, Status
from dialer.results_queue import ResultPublisher
from tests.integration.test_sentinel import sentinel

__all__ = ["sentinel"]  # the fixture: a real sentinel process monitoring an embedded master


def test_the_agents_publisher_sends_through_sentinel(
    sentinel: tuple[str, EmbeddedRedis], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, master = sentinel
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "jobs")
    publisher = ResultPublisher(url, tmp_path / "spool")
    now = datetime.now(UTC)
    data = CandidateData(
        call_id="via-sentinel", status=Status.COMPLETED, attempt=1, started_at=now, ended_at=now
    )
    try:
        assert publisher.publish(ResultMessage.from_agent(data, now)) == "sent"
        assert publisher.pending() == []
    finally:
        publisher.close()
    client = redis.Redis.from_url(master.url)
    (raw,) = client.lrange("results", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "dialer.results.record"
    client.close()
