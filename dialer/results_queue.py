"""Publishing agent results onto the results queue, with a local spool when Redis is away.

The agent runs far from the Celery workers; the only thing it needs is to put one
`ResultMessage` per attempt on the results queue (`RESULTS_TASK` on `RESULTS_QUEUE`, kwarg
`message`). `ResultPublisher.publish` sends it through a light Celery app (JSON only, short
connection timeouts, no retry loop) and, when the broker cannot be reached, writes the message
to a spool directory instead, so a Redis outage never loses a result. `flush()` sends spooled
messages oldest first and deletes each file only after its message was sent; the consumer is
idempotent by `(call_id, attempt)`, so a message sent twice (crash between send and delete)
is harmless.

Spool files are written atomically (temporary file, fsync, rename) and named
`<ns timestamp>-<sequence>-<call_id>-<attempt>.json`, so names sort oldest first. A file that
is not a valid message is renamed to `*.bad` and skipped, never retried forever. Concurrent
flushers (several agent processes sharing a spool) are serialised with an advisory lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pydantic
from celery import Celery

from dialer.messages import RESULTS_QUEUE, RESULTS_TASK, ResultMessage

log = logging.getLogger("dialer.results_queue")

PublishOutcome = Literal["sent", "spooled"]

SPOOL_SUFFIX = ".json"
BAD_SUFFIX = ".bad"
_LOCK_NAME = ".flush.lock"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")
_sequence = itertools.count()


class ResultPublisher:
    """`publish(msg)` -> "sent" | "spooled"; `flush()` -> number of spooled messages sent.

    `connect_timeout` bounds how long an unreachable broker can hold up a publish (the default
    keeps a hang-up snappy). Safe to share between threads; not between processes (each
    process makes its own publisher; the spool directory may be shared).
    """

    def __init__(
        self,
        broker_url: str,
        spool_dir: Path,
        *,
        connect_timeout: float = 2.0,
    ) -> None:
        self.broker_url = broker_url
        self.spool_dir = Path(spool_dir)
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._app = _publisher_app(broker_url, connect_timeout)

    # -- public ----------------------------------------------------------------------------

    def publish(self, msg: ResultMessage) -> PublishOutcome:
        """Send `msg` to the results queue, or spool it to disk if the broker is unreachable."""
        body = msg.model_dump(mode="json")
        try:
            self._send(body)
        except Exception as exc:  # any broker / socket failure: keep the result on disk
            path = self._spool(msg, body)
            log.warning(
                "results queue unreachable (%s); result %s attempt %d spooled to %s",
                _describe(exc),
                msg.call_id,
                msg.attempt,
                path.name,
            )
            return "spooled"
        return "sent"

    def flush(self) -> int:
        """Send spooled messages oldest first; stop at the first failure. Returns how many
        were sent (and deleted). Another process already flushing the same spool: returns 0."""
        if not self.spool_dir.is_dir():
            return 0
        sent = 0
        with self._flush_lock() as acquired:
            if not acquired:
                return 0
            for path in self.pending():
                body = _read_message(path)
                if body is None:
                    _quarantine(path)
                    continue
                try:
                    self._send(body)
                except Exception as exc:
                    log.info(
                        "results queue still unreachable (%s); %d spooled result(s) wait",
                        _describe(exc),
                        len(self.pending()),
                    )
                    break
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                sent += 1
        if sent:
            log.info("flushed %d spooled result(s) to the results queue", sent)
        return sent

    def pending(self) -> list[Path]:
        """Spooled message files, oldest first."""
        if not self.spool_dir.is_dir():
            return []
        return sorted(
            p for p in self.spool_dir.iterdir() if p.is_file() and p.name.endswith(SPOOL_SUFFIX)
        )

    def close(self) -> None:
        self._app.close()

    def __enter__(self) -> ResultPublisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _send(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._app.send_task(
                RESULTS_TASK,
                kwargs={"message": body},
                queue=RESULTS_QUEUE,
                retry=False,
            )

    def _spool(self, msg: ResultMessage, body: dict[str, Any]) -> Path:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        call = _UNSAFE.sub("_", msg.call_id)[:80]
        name = f"{time.time_ns():020d}-{next(_sequence):06d}-{call}-{msg.attempt}{SPOOL_SUFFIX}"
        final = self.spool_dir / name
        tmp = self.spool_dir / f".{name}.{os.getpid()}.tmp"
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(self.spool_dir)
        return final

    @contextlib.contextmanager
    def _flush_lock(self) -> Iterator[bool]:
        lock_path = self.spool_dir / _LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _publisher_app(broker_url: str, connect_timeout: float) -> Celery:
    """A Celery app that only publishes: JSON, no result backend, fail fast on a dead broker."""
    app = Celery("dialer-results-publisher", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        broker_connection_timeout=connect_timeout,
        broker_connection_retry=False,
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=0,
        broker_pool_limit=1,
        task_publish_retry=False,
        broker_transport_options={
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": max(connect_timeout, 2.0),
            "max_retries": 0,
            "retry_on_timeout": False,
            # A sentinel:// broker URL needs the monitored master's name, as the workers use.
            **(
                {"master_name": os.environ["REDIS_SENTINEL_MASTER"]}
                if os.environ.get("REDIS_SENTINEL_MASTER")
                else {}
            ),
        },
    )
    return app


def _read_message(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        ResultMessage.model_validate(body)
    except (OSError, ValueError, pydantic.ValidationError) as exc:
        log.error("spooled result %s is unreadable (%s); moved aside", path.name, exc)
        return None
    if not isinstance(body, dict):  # pragma: no cover - model_validate rejects non-objects
        return None
    return body


def _quarantine(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rename(path.with_name(path.name + BAD_SUFFIX))


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}" if text != type(exc).__name__ else text
