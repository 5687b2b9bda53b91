"""Celery settings for the screening dialer. One comment per setting says why it is set.

Read by `tasks.app` (`app.config_from_object("celeryconfig")`). Environment overrides:
REDIS_URL for the broker (there is no result backend).
"""

from __future__ import annotations

import os

_redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# Sentinel: `sentinel://h1:26379;sentinel://h2:26379/0` plus the master's name.
_sentinel_master = os.environ.get("REDIS_SENTINEL_MASTER")
# Broker and results on the same Redis the job store uses: one thing to run and back up.
broker_url = _redis_url
# Our Redis transport: kombu's, except that a queue item that is not a Celery message is
# dead-lettered instead of stopping the worker (tasks/broker.py). Sentinel URLs keep kombu's.
if _redis_url.startswith(("redis://", "rediss://")):
    broker_transport = "tasks.broker:SafeRedisTransport"
# Task return values are not used (state lives in the job store); keep no result backend.
result_backend = None
task_ignore_result = True

# JSON only, so a non-Python backend can send_task with plain JSON and nothing unpickles input.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# Ack after the task finishes, so a worker that dies mid-task does not lose the message...
task_acks_late = True
# ...and a child killed by SIGKILL / OOM has its message re-queued instead of acked.
task_reject_on_worker_lost = True
# One message at a time per process: a long dial must not hold other messages hostage.
worker_prefetch_multiplier = 1

# Redis redelivers an unacked message after this many seconds. It must exceed the longest task
# (a dial waits up to the ringing timeout). Long delays never use ETA/countdown: they live in the
# due-set (DESIGN section 4), so this can stay moderate.
_visibility_timeout = int(os.environ.get("DIALER_VISIBILITY_TIMEOUT_S", "3600"))
# How often each worker sweeps the unacked hash for messages older than the visibility timeout
# (a dead worker's, or those a lost connection could not hand back). kombu's default is a scan
# every 10 x 10 s; keep it far below the visibility timeout.
_unacked_sweep_s = int(os.environ.get("DIALER_UNACKED_SWEEP_S", "100"))
broker_transport_options = {
    "visibility_timeout": _visibility_timeout,
    "unacked_restore_interval": max(1, _unacked_sweep_s),
    "unacked_restore_throttle": 1,
    # A worker drains its queues in -Q order; `dialer worker` lists results first, so a dial
    # backlog cannot starve the results that end calls and free their slots.
    "queue_order_strategy": "priority",
    **({"master_name": _sentinel_master} if _sentinel_master else {}),
}
# Reconnect on broker loss at start-up as well as while running.
broker_connection_retry_on_startup = True

# Each kind of work on its own queue so a backlog of one cannot starve the others.
task_default_queue = "default"
task_routes = {
    "dialer.intake.submit": {"queue": "intake"},
    "dialer.dial.place_call": {"queue": "dial"},
    "dialer.results.record": {"queue": "results"},
    "dialer.webhooks.deliver": {"queue": "webhooks"},
    "dialer.beat.*": {"queue": "beat"},
}

# Beat drives the due-sets; the tasks themselves take a Redis lock so only one beat acts.
beat_schedule = {
    "move-due-jobs": {"task": "dialer.beat.move_due_jobs", "schedule": 1.0},
    "move-due-webhooks": {"task": "dialer.beat.move_due_webhooks", "schedule": 1.0},
    "reap-expired-slots": {"task": "dialer.beat.reap", "schedule": 30.0},
}

# UTC everywhere; local calling hours are computed per candidate in dialer.windows.
timezone = "UTC"
enable_utc = True

# Workers and beat log through dialer.logs (masking filter), installed by the setup_logging
# signal in tasks/app.py, rather than Celery's own handler set-up.
worker_hijack_root_logger = False
worker_send_task_events = False
