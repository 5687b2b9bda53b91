"""The HTTP list filter spells out every job state and final status (an explicit enum keeps
OpenAPI clean); this keeps it in step with the models."""

from __future__ import annotations

from dialer.http.routes.screenings import StatusFilter
from dialer.models import JobState, Status


def test_status_filter_is_exactly_the_states_and_statuses() -> None:
    assert {m.value for m in StatusFilter} == {s.value for s in (*JobState, *Status)}
