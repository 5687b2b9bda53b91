"""Intake task: a stable name a non-Python backend can `send_task` with a JSON request."""

from __future__ import annotations

from typing import Any

from dialer.errors import JobConflict, ValidationFailed
from tasks.app import app
from tasks.context import requeue_when_redis_is_away, runtime


@app.task(name="dialer.intake.submit", ignore_result=False)
@requeue_when_redis_is_away
def submit(request: Any) -> dict[str, Any]:
    """Submit one ScreeningRequest (a JSON object). Never raises on bad input: the rejection
    is recorded in the rejected list and returned."""
    rt = runtime()
    now = rt.clock.now()
    try:
        result = rt.intake.submit(request, now, source="celery")
    except ValidationFailed as exc:
        return {
            "ok": False,
            "errors": [{"field": p.field, "message": p.message} for p in exc.problems],
        }
    except JobConflict as exc:
        return {"ok": False, "errors": [{"field": "call_id", "message": str(exc)}]}
    return {
        "ok": True,
        "call_id": result.call_id,
        "created": result.created,
        "state": result.state.value,
        "final_status": result.final_status.value if result.final_status else None,
        "dial_at": result.dial_at.isoformat() if result.dial_at else None,
    }
