"""Nothing Celery cannot run is dropped silently: undecodable messages, unknown task names,
invalid messages and tasks that raised all land in the dead-letter list (`Keys.dead_letters`)
with the reason, and the worker carries on.

Our tasks validate their own arguments and dead-letter bad input themselves; this module is the
net under everything else (a typo in a task name from a non-Python backend, a body that is not
JSON, a task that crashed on a bug).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from celery.worker.consumer.consumer import Consumer

from dialer.results import dead_letter

log = logging.getLogger("dialer.tasks.dead_letters")


def record(source: str, payload: Any, reason: str) -> None:
    try:
        from tasks.context import runtime

        rt = runtime()
        dead_letter(rt.client, rt.keys, source, payload, reason, rt.clock.now())
    except Exception:  # Redis itself is down: the log line is all we can keep
        log.exception("could not dead-letter a %s message (%s)", source, reason)


def _body(message: Any) -> Any:
    try:
        return (
            message.body.decode("utf-8", "replace")
            if isinstance(message.body, bytes)
            else message.body
        )
    except Exception:
        return repr(message)


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, but an undecodable message is dead-lettered before it is acked."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        record(
            "broker",
            {"body": _body(message), "content_type": message.content_type},
            f"undecodable message: {exc}",
        )
        super().on_decode_error(message, exc)


@signals.task_unknown.connect
def _on_unknown(message: Any = None, exc: Any = None, name: str = "", **_: Any) -> None:
    record("broker", {"task": name, "body": _body(message)}, f"unknown task name {name!r}")


@signals.task_rejected.connect
def _on_rejected(message: Any = None, exc: Any = None, **_: Any) -> None:
    record("broker", {"body": _body(message)}, f"invalid message: {exc or 'unknown format'}")


@signals.task_failure.connect
def _on_failure(
    sender: Any = None,
    task_id: str = "",
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    name = getattr(sender, "name", "?")
    record(
        name,
        {"task_id": task_id, "args": args, "kwargs": kwargs},
        f"task raised {type(exception).__name__}: {exception}",
    )
