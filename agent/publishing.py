"""The worker's `ResultSink`: one `ResultMessage` per attempt onto the results queue, spooled
to disk by `dialer.results_queue.ResultPublisher` when Redis is unreachable, and flushed when it
is back (at the start of every job and after every successful publish)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from dialer.messages import ResultMessage
from dialer.models import CandidateData
from dialer.results_queue import PublishOutcome, ResultPublisher

log = logging.getLogger("agent.publishing")


class PublisherSink:
    def __init__(
        self,
        publisher: ResultPublisher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.publisher = publisher
        self.clock = clock
        self.outcomes: list[PublishOutcome] = []

    async def deliver(self, data: CandidateData) -> None:
        message = ResultMessage.from_agent(data, self.clock())
        outcome = await asyncio.to_thread(self.publisher.publish, message)
        self.outcomes.append(outcome)
        log.info("result of %s attempt %d %s", data.call_id, data.attempt, outcome)
        if outcome == "sent":
            await self.flush()

    async def flush(self) -> int:
        """Send results spooled earlier (by this or another process). Never raises."""
        try:
            return await asyncio.to_thread(self.publisher.flush)
        except Exception:
            log.exception("flushing the result spool failed")
            return 0
