"""What the demo scenario must produce. The per-persona rules live in the package
(`dialer.demo_expected`, which `dialer demo` uses to check its own run); this module adds the
figures the bundled scenario and the README promise."""

from __future__ import annotations

from dialer.demo_expected import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_POLICY,
    KNOWN_PERSONAS,
    expected_outcomes,
    expected_status,
    retry_delay_s,
)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_POLICY",
    "DOCUMENTED_DELAYS_S",
    "EXPECTED_TOTALS",
    "KNOWN_PERSONAS",
    "expected_outcomes",
    "expected_status",
    "retry_delay_s",
]

# The delays spelled out, as the README promises them (checked against RetryPolicy in a test).
DOCUMENTED_DELAYS_S = {
    "busy": [15 * 60],
    "no_answer": [2 * 3600, 24 * 3600],
    "voicemail": [24 * 3600],
    "incomplete": [30 * 60],
    "declined": [24 * 3600],
}

# The bundled scenario's totals (50 candidates).
EXPECTED_TOTALS = {
    "busy": 1,
    "completed": 37,
    "declined": 1,
    "escalated": 1,
    "failed": 1,
    "incomplete": 1,
    "irrelevant": 1,
    "knockout_failed": 1,
    "no_answer": 1,
    "not_interested": 3,
    "unclear": 1,
    "voicemail": 1,
}
