"""Results consumer task (queue "results"): every attempt's result from the voice agent (dial
outcomes are recorded by the dial task itself). Every message it processed leaves a receipt,
whatever the verdict, which the agent's publisher waits for (dialer.results)."""

from __future__ import annotations

import logging
from typing import Any

import pydantic

from dialer.errors import JobNotFound
from dialer.messages import RESULTS_TASK, ResultMessage
from dialer.results import dead_letter
from tasks.app import app
from tasks.context import requeue_when_redis_is_away, runtime

log = logging.getLogger("dialer.tasks.results")


@app.task(name=RESULTS_TASK)
@requeue_when_redis_is_away
def record(message: Any = None, **unexpected: Any) -> str:
    rt = runtime()
    now = rt.clock.now()
    if unexpected:
        dead_letter(
            rt.client,
            rt.keys,
            "results",
            {"message": message, **unexpected},
            f"unexpected arguments: {', '.join(sorted(unexpected))}",
            now,
        )
        return "malformed"
    try:
        msg = ResultMessage.model_validate(message)
    except pydantic.ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()
        )
        dead_letter(rt.client, rt.keys, "results", message, f"malformed result: {reason}", now)
        return "malformed"
    try:
        consumed = rt.consumer.consume(msg, now)
    except JobNotFound:
        dead_letter(rt.client, rt.keys, "results", message, "no job with this call_id", now)
        # Processed all the same: the publisher stops sending it (an operator has it now).
        rt.consumer.write_receipt(msg.call_id, msg.attempt)
        return "unknown job"
    except ValueError as exc:  # an outcome that is neither a Status nor a DialOutcome
        dead_letter(rt.client, rt.keys, "results", message, f"malformed result: {exc}", now)
        rt.consumer.write_receipt(msg.call_id, msg.attempt)
        return "malformed"
    log.info("result %s attempt %d: %s", msg.call_id, msg.attempt, consumed.result)
    return consumed.result
