"""The worker's `ResultSink`: one `ResultMessage` per attempt onto the results queue through
`dialer.results_queue.ResultPublisher`, which keeps a copy of each on disk until the results
consumer's receipt shows it was processed (spooled, not sent, while Redis is unreachable).

Flushes send what was spooled and send again what was sent but never receipted (the queue can
lose a message: kombu's BRPOP window), after `DIALER_RESULT_CONFIRM_S`: at the start of every
job, after every successful publish, by the job that spooled a result, which keeps trying
(`drain`) before it ends, and every `AGENT_SPOOL_FLUSH_S` by the agent server process
(`SpoolFlusher`). Without the last two a result spooled by the day's last call waited for the
next call, its job sat `in_call`, and once the call slot's lease ran out the reaper recorded the
attempt `interrupted` and the real result arrived too late; the job's own drain alone is not
enough, because livekit-agents ends a job about 15 s after its room closes. The drain waits for
the send only, not for the receipt: the server's flusher looks after the receipts, and a job
need not stay alive for them. Flushes from several processes take turns (a file lock in the
spool)."""

from __future__ import annotations

import asyncio
import logging
import threading
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

    @property
    def spooled(self) -> bool:
        """True when a result of this sink went to the spool instead of the queue."""
        return "spooled" in self.outcomes

    async def drain(
        self, max_wait_s: float, *, first_delay_s: float = 1.0, max_delay_s: float = 30.0
    ) -> int:
        """Flush the spool until nothing waits to be sent or `max_wait_s` has passed, waiting
        `first_delay_s`, then twice as long each time (at most `max_delay_s`) between tries.
        Returns how many results still wait to be sent (0: all sent; their receipts are the
        server's `SpoolFlusher`'s business)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        delay = first_delay_s
        left = len(await asyncio.to_thread(self.publisher.pending))
        while left and loop.time() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            await self.flush()
            left = len(await asyncio.to_thread(self.publisher.pending))
            delay = min(delay * 2, max_delay_s)
        if left:
            log.warning(
                "%d result(s) still spooled in %s after %.0f s; the next job or "
                "`python -m agent flush-spool` sends them",
                left,
                self.publisher.spool_dir,
                max_wait_s,
            )
        return left

    async def flush(self) -> int:
        """Send results spooled earlier (by this or another process) and results whose
        receipt is overdue; drop the copies that were receipted. Never raises."""
        try:
            return await asyncio.to_thread(self.publisher.flush)
        except Exception:
            log.exception("flushing the result spool failed")
            return 0


class SpoolFlusher:
    """A daemon thread that flushes the spool every `interval_s` for as long as the agent
    server runs: spooled results wait for Redis, never for the next call, and a sent result
    without a receipt is sent again."""

    def __init__(self, publisher: ResultPublisher, interval_s: float) -> None:
        self.publisher = publisher
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SpoolFlusher:
        self._thread = threading.Thread(target=self._run, name="spool-flusher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.publisher.outstanding():
                    self.publisher.flush()
            except Exception:  # never let the flusher die: the next round tries again
                log.exception("spool flush failed")
