"""The one Celery app object. Task modules register on it; `celeryconfig` configures it."""

from __future__ import annotations

import gc
import logging
from typing import Any

from celery import Celery, signals

app = Celery("dialer")
app.config_from_object("celeryconfig")
app.conf.include = [
    "tasks.intake",
    "tasks.dial",
    "tasks.results",
    "tasks.webhooks",
    "tasks.beat",
    "tasks.dead_letters",
]
# Undecodable messages go to the dead-letter list instead of only a log line.
app.conf.worker_consumer = "tasks.dead_letters:DeadLetteringConsumer"


def use_broker(url: str) -> None:
    """Point this process's app at a Redis URL (tests and `dialer run` start Redis first)."""
    app.conf.broker_url = url


@signals.setup_logging.connect
def _masked_logging(loglevel: Any = None, **_: Any) -> None:
    """Every worker and beat logs through dialer.logs: phone numbers masked, secrets removed,
    whatever library writes the line (Celery dumps message bodies on some errors). The level is
    Celery's `-l` when given, else DIALER_LOG_LEVEL."""
    from dialer import logs

    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    logs.configure(level or None)


@signals.worker_init.connect
def _freeze_imported_objects(**_: Any) -> None:
    """Move everything the worker has built so far (Celery, the task modules, livekit-api and
    protobuf descriptors: about 100,000 objects) out of the garbage collector's reach, once
    the task modules are imported and before the pool starts. Without it, each new pool process
    ran full collections of 60-130 ms over those objects while its first dials were under way
    (measured in bench/pacing.py); forked children also keep sharing those pages."""
    gc.freeze()
