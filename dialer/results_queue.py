"""Publishing agent results onto the results queue, with a local spool of copies on disk.

The agent runs far from the Celery workers; the only thing it needs is to put one
`ResultMessage` per attempt on the results queue (`RESULTS_TASK` on `RESULTS_QUEUE`, kwarg
`message`), through a light Celery app (JSON only, short connection timeouts, no retry loop).

Nothing is lost on the way, in two senses:

- Redis unreachable: the message waits in the spool directory and `flush()` sends it later,
  oldest first.
- Sent, but lost by the broker: kombu's Redis transport takes a message off its queue (BRPOP)
  and only then records it as unacknowledged, so a worker killed in between loses it. So every
  result is written to the spool (fsync) *before* it is sent, and its copy is deleted only once
  the results consumer's receipt (`Keys.result_receipt`) exists. A copy sent `confirm_after_s`
  ago without a receipt is sent again, the same message (the consumer is idempotent by
  `(call_id, attempt)`, so a duplicate is harmless). One still without a receipt
  `give_up_after_s` after it was made is moved to `quarantine/` with an error in the log, never
  deleted silently.

The spool directory:

    <name>.json              not sent yet (the broker was unreachable); `pending()`
    sent/<name>.json         sent, waiting for the receipt; `unconfirmed()`; mtime = last send
    quarantine/<name>.json   given up without a receipt; `quarantined()`
    <name>.json.bad          unreadable, set aside (also under sent/)

Files are written atomically (temporary file, fsync, rename) and named
`<ns timestamp>-<sequence>-<call_id>-<attempt>.json`, so names sort oldest first and tell how old
a copy is. Concurrent flushers (several agent processes sharing a spool) are serialised with an
advisory lock; `publish` itself never waits for it.

The receipts are read from the Redis at `broker_url`, under `DIALER_KEY_PREFIX`: the agent's
broker must be the dialer's Redis (as everywhere in this project), with the workers' prefix.
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
import redis
from celery import Celery

from dialer.errors import ConfigError
from dialer.keys import Keys
from dialer.messages import RESULTS_QUEUE, RESULTS_TASK, ResultMessage
from dialer.redis_conn import connect
from dialer.settings import load_settings

log = logging.getLogger("dialer.results_queue")

PublishOutcome = Literal["sent", "spooled"]

SPOOL_SUFFIX = ".json"
BAD_SUFFIX = ".bad"
SENT_DIR = "sent"
QUARANTINE_DIR = "quarantine"
_LOCK_NAME = ".flush.lock"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")
_sequence = itertools.count()


class ResultPublisher:
    """`publish(msg)` -> "sent" | "spooled"; `flush()` -> number of messages sent.

    `connect_timeout` bounds how long an unreachable broker can hold up a publish (the default
    keeps a hang-up snappy). `keys`, `confirm_after_s` and `give_up_after_s` default to the
    settings (`DIALER_KEY_PREFIX`, `DIALER_RESULT_CONFIRM_S`, `DIALER_RESULT_GIVE_UP_S`). Safe to
    share between threads; not between processes (each process makes its own publisher; the
    spool directory may be shared).
    """

    def __init__(
        self,
        broker_url: str,
        spool_dir: Path,
        *,
        connect_timeout: float = 2.0,
        keys: Keys | None = None,
        confirm_after_s: float | None = None,
        give_up_after_s: float | None = None,
    ) -> None:
        self.broker_url = broker_url
        self.spool_dir = Path(spool_dir)
        self.connect_timeout = connect_timeout
        if keys is None or confirm_after_s is None or give_up_after_s is None:
            settings = load_settings()
            keys = keys if keys is not None else Keys(settings.key_prefix)
            if confirm_after_s is None:
                confirm_after_s = settings.result_confirm_s
            if give_up_after_s is None:
                give_up_after_s = settings.result_give_up_s
        self.keys = keys
        self.confirm_after_s = confirm_after_s
        self.give_up_after_s = give_up_after_s
        self._lock = threading.Lock()
        self._app = _publisher_app(broker_url, connect_timeout)
        self._client_lock = threading.Lock()
        self._client: redis.Redis | None = None

    @property
    def sent_dir(self) -> Path:
        """Copies of sent results, waiting for the consumer's receipt."""
        return self.spool_dir / SENT_DIR

    @property
    def quarantine_dir(self) -> Path:
        """Copies given up on: no receipt within `give_up_after_s`."""
        return self.spool_dir / QUARANTINE_DIR

    # -- public ----------------------------------------------------------------------------

    def publish(self, msg: ResultMessage) -> PublishOutcome:
        """Keep a copy of `msg` on disk, then send it to the results queue; if the broker is
        unreachable the copy waits for `flush()` ("spooled")."""
        body = msg.model_dump(mode="json")
        copy: Path | None
        try:  # write-ahead: the copy is on disk before the message can be lost on the way
            copy = self._write(self.sent_dir, msg, body)
        except OSError as exc:
            log.error(
                "could not keep a copy of result %s attempt %d in %s (%s); sending it without",
                msg.call_id,
                msg.attempt,
                self.sent_dir,
                _describe(exc),
            )
            copy = None
        try:
            self._send(body)
        except Exception as exc:  # any broker / socket failure: keep the result on disk
            path = self._write(self.spool_dir, msg, body) if copy is None else self._unsent(copy)
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
        """Send spooled messages oldest first (stop at the first failure), then delete the
        copies whose receipt exists and send again those without one for `confirm_after_s`.
        Returns how many messages were sent. Another process already flushing the same
        spool: returns 0."""
        if not self.spool_dir.is_dir():
            return 0
        with self._flush_lock() as acquired:
            if not acquired:
                return 0
            sent, reachable = self._send_pending()
            if reachable:
                sent += self._confirm_or_send_again()
        return sent

    def pending(self) -> list[Path]:
        """Spooled message files not sent yet, oldest first."""
        return _messages_in(self.spool_dir)

    def unconfirmed(self) -> list[Path]:
        """Copies of sent messages whose receipt was not seen yet, oldest first."""
        return _messages_in(self.sent_dir)

    def outstanding(self) -> list[Path]:
        """Every message not yet known to be processed: `pending()` + `unconfirmed()`."""
        return self.pending() + self.unconfirmed()

    def quarantined(self) -> list[Path]:
        """Copies given up on (each was logged as an error), oldest first."""
        return _messages_in(self.quarantine_dir)

    def close(self) -> None:
        self._app.close()
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

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

    def _send_pending(self) -> tuple[int, bool]:
        """Send the messages not sent yet; (how many were sent, whether the broker answered)."""
        sent = 0
        for path in self.pending():
            try:
                body = _read_message(path)
            except FileNotFoundError:  # moved by a publish or another flusher meanwhile
                continue
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
                return sent, False
            with contextlib.suppress(FileNotFoundError):
                self._sent(path)
            sent += 1
        if sent:
            log.info("flushed %d spooled result(s) to the results queue", sent)
        return sent, True

    def _confirm_or_send_again(self) -> int:
        """Delete the copies the consumer has receipted, send again those sent too long ago,
        quarantine those too old. Returns how many were sent again."""
        copies: list[tuple[Path, dict[str, Any]]] = []
        for path in self.unconfirmed():
            try:
                body = _read_message(path)
            except FileNotFoundError:
                continue
            if body is None:
                _quarantine(path)
                continue
            copies.append((path, body))
        if not copies:
            return 0
        try:
            receipted = self._receipts([(str(b["call_id"]), int(b["attempt"])) for _, b in copies])
        except (redis.RedisError, OSError, ConfigError) as exc:
            log.info(
                "cannot read result receipts (%s); %d sent result(s) wait for confirmation",
                _describe(exc),
                len(copies),
            )
            return 0
        now = time.time()
        resent = 0
        for (path, body), done in zip(copies, receipted, strict=True):
            call_id, attempt = body["call_id"], body["attempt"]
            if done:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            try:
                since = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if since < self.confirm_after_s:
                continue
            age = now - _made_at(path)
            if age >= self.give_up_after_s:
                where = self._give_up(path)
                log.error(
                    "result %s attempt %d: no receipt from the results consumer %.0f s after "
                    "it was made; given up and kept as %s (to send it again, move it back to "
                    "%s: the next flush sends it)",
                    call_id,
                    attempt,
                    age,
                    where,
                    self.spool_dir,
                )
                continue
            try:
                self._send(body)
            except Exception as exc:
                log.info("results queue unreachable (%s); copies wait", _describe(exc))
                break
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)  # the last send, for the next confirmation delay
            resent += 1
            log.warning(
                "result %s attempt %d: no receipt %.0f s after it was sent (lost on the way?); "
                "sent again",
                call_id,
                attempt,
                since,
            )
        return resent

    def _receipts(self, attempts: list[tuple[str, int]]) -> list[bool]:
        """Whether the consumer left a receipt for each `(call_id, attempt)`: one round trip."""
        pipe = self._receipt_client().pipeline(transaction=False)
        for call_id, attempt in attempts:
            pipe.exists(self.keys.result_receipt(call_id, attempt))
        return [bool(n) for n in pipe.execute()]

    def _receipt_client(self) -> redis.Redis:
        with self._client_lock:
            if self._client is None:
                if self.broker_url.startswith("sentinel://"):
                    self._client = connect(self.broker_url)
                else:
                    self._client = redis.Redis.from_url(
                        self.broker_url,
                        decode_responses=True,
                        socket_connect_timeout=self.connect_timeout,
                        socket_timeout=max(self.connect_timeout, 2.0),
                    )
            return self._client

    def _write(self, directory: Path, msg: ResultMessage, body: dict[str, Any]) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        call = _UNSAFE.sub("_", msg.call_id)[:80]
        name = f"{time.time_ns():020d}-{next(_sequence):06d}-{call}-{msg.attempt}{SPOOL_SUFFIX}"
        final = directory / name
        tmp = directory / f".{name}.{os.getpid()}.tmp"
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(directory)
        return final

    def _unsent(self, copy: Path) -> Path:
        """A copy whose send failed goes back to the spool's top (sent by `flush()`). Left in
        sent/ if it cannot move: it is then sent again after the confirmation delay."""
        target = self.spool_dir / copy.name
        try:
            os.replace(copy, target)
        except OSError:
            return copy
        _fsync_dir(self.spool_dir)
        return target

    def _sent(self, path: Path) -> None:
        """A spooled message was sent: its copy now waits for the receipt, from now on."""
        self.sent_dir.mkdir(parents=True, exist_ok=True)
        target = self.sent_dir / path.name
        os.replace(path, target)
        os.utime(target)

    def _give_up(self, path: Path) -> Path:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / path.name
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, target)
        return target

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


def _messages_in(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(SPOOL_SUFFIX))


def _made_at(path: Path) -> float:
    """When the copy was made (epoch s): the timestamp its name starts with."""
    try:
        return int(path.name.split("-", 1)[0]) / 1e9
    except ValueError:
        return path.stat().st_mtime


def _read_message(path: Path) -> dict[str, Any] | None:
    """The message in `path`, or None when it is unreadable. FileNotFoundError: it is gone."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        ResultMessage.model_validate(body)
    except FileNotFoundError:
        raise
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
