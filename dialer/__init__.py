"""Screening dialer: queue-driven batch dialing for phone pre-screening of job candidates.

Public surface (everything else is internal and may change):

    from dialer import Dialer, ScreeningRequest, CandidateData, Status
    from dialer import DialerError, ValidationFailed, JobConflict, JobNotFound

The exception tree is written out in `dialer.errors`. Names are imported lazily so that light
users (the agent reads only `dialer.models`) do not pull in Redis and Celery wiring.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BatchReport": "dialer.client",
    "Dialer": "dialer.client",
    "JobStatus": "dialer.client",
    "ConfigError": "dialer.errors",
    "DialerError": "dialer.errors",
    "JobConflict": "dialer.errors",
    "JobNotFound": "dialer.errors",
    "ValidationFailed": "dialer.errors",
    "CandidateData": "dialer.models",
    "JobState": "dialer.models",
    "ScreeningRequest": "dialer.models",
    "SessionInput": "dialer.models",
    "Status": "dialer.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dialer' has no attribute {name!r}")
    return getattr(import_module(module), name)
