"""Campaigns on real Redis: create with a policy, idempotency and conflicts, pause / resume,
progress, and the policy reaching intake (calling window) and the results consumer (retries)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis

from dialer.campaigns import (
    CampaignConflict,
    CampaignNotFound,
    CampaignPolicy,
    CampaignStore,
)
from dialer.errors import ValidationFailed
from dialer.messages import ResultMessage
from dialer.models import DialOutcome
from tests.support.runtime import TestRuntime, make_runtime
from tests.support.seed import seed_request

BRUSSELS = ZoneInfo("Europe/Brussels")
WED_10 = datetime(2026, 3, 4, 10, 0, tzinfo=BRUSSELS).astimezone(UTC)
POLICY = {
    "calls_per_second": 2.5,
    "max_concurrent_calls": 4,
    # Afternoons only on weekdays, closed at weekends.
    "calling_window": {
        day: [{"start": "14:00", "end": "17:00"}] for day in ("mon", "tue", "wed", "thu", "fri")
    }
    | {"sat": [], "sun": []},
    "retry_policy": {"busy": [600]},
}


@pytest.fixture()
def t(r: redis.Redis) -> TestRuntime:
    return make_runtime(r, WED_10)


@pytest.fixture()
def store(t: TestRuntime) -> CampaignStore:
    return CampaignStore(t.runtime.client, t.runtime.keys)


def test_create_is_idempotent_and_a_different_definition_conflicts(store: CampaignStore) -> None:
    campaign, created = store.create("spring", now=WED_10, name="Spring", policy=POLICY)
    assert created and campaign.name == "Spring" and not campaign.paused
    assert campaign.policy.calls_per_second == 2.5 and campaign.policy.max_concurrent_calls == 4
    assert campaign.created_at == WED_10
    again, created_again = store.create("spring", now=WED_10, name="Spring", policy=POLICY)
    assert not created_again and again == campaign
    with pytest.raises(CampaignConflict, match="already exists"):
        store.create("spring", now=WED_10, name="Other")
    assert [c.id for c in store.list()] == ["spring"]


def test_invalid_definitions_name_every_field(store: CampaignStore) -> None:
    with pytest.raises(ValidationFailed) as caught:
        store.create(
            "bad id",
            now=WED_10,
            policy={"calls_per_second": 0, "retry_policy": {"busy": []}, "nope": 1},
            template={"phone_number": "+32470123456", "job_title": "Baker"},
        )
    fields = {p.field for p in caught.value.problems}
    assert fields == {
        "id",
        "policy.calls_per_second",
        "policy.retry_policy.busy",
        "policy.nope",
        "template.phone_number",
    }


def test_pause_and_resume(store: CampaignStore) -> None:
    store.create("spring", now=WED_10)
    assert store.is_paused("spring") is False
    paused = store.pause("spring", now=WED_10, reason="client asked")
    assert paused.paused and paused.pause_reason == "client asked" and paused.paused_at == WED_10
    assert store.is_paused("spring") is True
    resumed = store.resume("spring", now=WED_10 + timedelta(hours=1))
    assert not resumed.paused and resumed.pause_reason is None
    assert resumed.resumed_at == WED_10 + timedelta(hours=1)
    assert store.is_paused("spring") is False
    assert store.is_paused(None) is False and store.is_paused("unknown") is False
    with pytest.raises(CampaignNotFound):
        store.pause("unknown", now=WED_10)
    created_paused, _ = store.create("autumn", now=WED_10, paused=True)
    assert created_paused.paused and store.is_paused("autumn")


def test_a_campaign_known_only_from_its_jobs(t: TestRuntime, store: CampaignStore) -> None:
    t.runtime.intake.submit(seed_request(call_id="j1", campaign_id="implicit"), WED_10)
    campaign = store.get("implicit")
    assert campaign.created_at is None and campaign.policy == CampaignPolicy()
    store.pause("implicit", now=WED_10)  # an operator can still stop it
    assert store.is_paused("implicit")
    created, was_new = store.create("implicit", now=WED_10, policy={"calls_per_second": 1})
    assert was_new and created.policy.calls_per_second == 1


def test_progress_counts_states_and_final_statuses(t: TestRuntime, store: CampaignStore) -> None:
    store.create("spring", now=WED_10)
    for i in range(4):
        t.runtime.intake.submit(seed_request(call_id=f"s{i}", campaign_id="spring"), WED_10)
    t.runtime.intake.submit(seed_request(call_id="other"), WED_10)
    t.runtime.dnc.add(["+32470123400"])
    t.runtime.intake.submit(
        seed_request(call_id="s-dnc", campaign_id="spring", phone="+32470123400"), WED_10
    )
    from dialer.client import Dialer

    Dialer(t.runtime).cancel("s0")
    progress = store.progress("spring")
    assert progress.total == 5 and progress.done == 2 and progress.pending == 3
    assert progress.by_state["scheduled"] == 3 and progress.by_state["done"] == 2
    assert progress.by_status == {"do_not_call": 1, "cancelled": 1}
    with pytest.raises(CampaignNotFound):
        store.progress("nobody")


def test_the_campaign_window_decides_the_first_dial(t: TestRuntime, store: CampaignStore) -> None:
    store.create("afternoons", now=WED_10, policy=POLICY)
    result = t.runtime.intake.submit(seed_request(call_id="a1", campaign_id="afternoons"), WED_10)
    assert result.dial_at == datetime(2026, 3, 4, 14, 0, tzinfo=BRUSSELS).astimezone(UTC)
    own_window = {"wed": [{"start": "09:00", "end": "12:00"}]}
    mine = t.runtime.intake.submit(
        seed_request(call_id="a2", campaign_id="afternoons", calling_window=own_window), WED_10
    )
    assert mine.dial_at == WED_10  # the job's own window wins


def test_the_campaign_retry_policy_reaches_the_results_consumer(
    t: TestRuntime, store: CampaignStore
) -> None:
    store.create("quick-retry", now=WED_10, policy={"retry_policy": {"busy": [600]}})
    t.runtime.intake.submit(seed_request(call_id="b1", campaign_id="quick-retry"), WED_10)
    attempt = t.start_dialing("b1")
    message = ResultMessage.from_dial("b1", attempt, DialOutcome.BUSY, WED_10)
    t.runtime.consumer.consume(message, WED_10)
    assert t.runtime.due_jobs.when("b1") == WED_10 + timedelta(seconds=600)


def test_set_policy_replaces_it(store: CampaignStore) -> None:
    store.create("spring", now=WED_10, policy=POLICY)
    later = WED_10 + timedelta(minutes=5)
    updated = store.set_policy(
        "spring", {"calls_per_second": 1}, now=later, template={"job_title": "Baker"}
    )
    assert updated.policy == CampaignPolicy(calls_per_second=1)
    assert updated.template == {"job_title": "Baker"} and updated.updated_at == later
    assert updated.created_at == WED_10
    with pytest.raises(CampaignNotFound):
        store.set_policy("nobody", {}, now=later)
    with pytest.raises(ValidationFailed):
        store.set_policy("spring", {"max_concurrent_calls": 0}, now=later)
