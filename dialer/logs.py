"""Logging set-up: phone numbers masked in every record, secrets never printed, JSON optional.

The masking is a logging.Filter on the handler, so it covers our loggers, Celery's, uvicorn's
and livekit's alike: whatever a library logs passes through `mask_numbers_in_text`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from dialer.phone import mask_numbers_in_text

_SECRET_ENV = ("LIVEKIT_API_SECRET", "OPENAI_API_KEY", "DEEPGRAM_API_KEY", "CARTESIA_API_KEY")


class MaskingFilter(logging.Filter):
    """Rewrites each record's message with phone numbers masked and known secrets removed."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets = [v for k in _SECRET_ENV if (v := os.environ.get(k)) and len(v) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in self._secrets:
            message = message.replace(secret, "***")
        record.msg = mask_numbers_in_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_numbers_in_text(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            body["exc"] = record.exc_text
        return json.dumps(body, ensure_ascii=False)


def configure(level: str | None = None, *, json_logs: bool | None = None) -> None:
    """Install one masking handler on the root logger (idempotent)."""
    level = level or os.environ.get("DIALER_LOG_LEVEL", "INFO")
    if json_logs is None:
        json_logs = os.environ.get("DIALER_LOG_JSON", "").lower() in ("1", "true", "yes")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dialer", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._dialer = True  # type: ignore[attr-defined]
    handler.addFilter(MaskingFilter())
    handler.setFormatter(
        JsonFormatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
