"""Webhook endpoints, delivery, retries, dead letters and replay against real Redis and a real
HTTP receiver on 127.0.0.1 that verifies every signature with the `standardwebhooks` library.

Time is passed in explicitly (`now`), so a 10 h retry runs at once: deliver, `pop_due(later)`,
deliver again.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from standardwebhooks.webhooks import Webhook

from dialer.errors import UnsafeWebhookURL, ValidationFailed, WebhookError
from dialer.events import ATTEMPT, COMPLETED, RETRY_SCHEDULED
from dialer.keys import Keys
from dialer.messages import ResultMessage
from dialer.models import CandidateData, Status
from dialer.webhooks import (
    LOOPBACK_NETWORKS,
    DeliveryNotFound,
    DeliveryStatus,
    EndpointNotFound,
    UrlGuard,
    WebhookService,
    generate_secret,
    load_config_file,
    load_webhook_config,
    make_client,
    parse_config,
    post_once,
    signed_headers,
)
from dialer.webhooks.receiver import Reply, WebhookReceiver
from tests.support import runtime as support
from tests.support.seed import seed_request

T0 = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
KEYS = Keys()
DATA = {"call_id": "c-1", "status": "completed", "attempt": 1}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture()
def secret() -> str:
    return generate_secret()


@pytest.fixture()
def rx(secret: str, tmp_path: Path) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret, out_dir=tmp_path / "received") as receiver:
        yield receiver


@pytest.fixture()
def svc(r: redis.Redis) -> Iterator[WebhookService]:
    service = WebhookService(r, KEYS, allow_networks=LOOPBACK_NETWORKS, timeout_s=1.0)
    try:
        yield service
    finally:
        service.close()


def add(
    svc: WebhookService, rx: WebhookReceiver, secret: str, path: str = "/crm", **kw: Any
) -> str:
    return svc.endpoints.add(rx.url(path), secret=secret, now=T0, **kw).id


def emit_one(svc: WebhookService, event: str = COMPLETED, now: datetime = T0) -> str:
    ids = svc.emit(event, DATA, now)
    assert len(ids) == 1
    return ids[0]


# -- endpoints ------------------------------------------------------------------------------------


def test_endpoints_add_list_disable_enable_remove(svc: WebhookService) -> None:
    a = svc.endpoints.add("http://127.0.0.1:9/a", events=[COMPLETED], description="CRM", now=T0)
    b = svc.endpoints.add("http://127.0.0.1:9/b", secret=generate_secret(), now=at(1))
    assert a.id.startswith("ep_") and a.id != b.id
    assert a.secret_value().startswith("whsec_")
    Webhook(a.secret_value())  # a generated secret is a valid Standard Webhooks secret
    assert [e.id for e in svc.endpoints.list()] == [a.id, b.id]
    assert svc.endpoints.get(a.id).events == (COMPLETED,)

    disabled = svc.endpoints.disable(a.id, "maintenance")
    assert not disabled.enabled and disabled.disabled_reason == "maintenance"
    assert not svc.endpoints.get(a.id).enabled
    enabled = svc.endpoints.enable(a.id)
    assert enabled.enabled and enabled.disabled_reason is None

    assert svc.endpoints.remove(b.id)
    assert not svc.endpoints.remove(b.id)
    with pytest.raises(EndpointNotFound):
        svc.endpoints.get(b.id)
    with pytest.raises(EndpointNotFound):
        svc.endpoints.enable(b.id)


def test_secrets_are_masked_everywhere_but_the_store(svc: WebhookService) -> None:
    secret = generate_secret()
    ep = svc.endpoints.add("http://127.0.0.1:9/a", secret=secret, now=T0)
    listed = svc.endpoints.list()[0]
    assert secret not in repr(listed) and secret not in str(listed)
    public = listed.public()
    assert public["secret"] == "whsec_…" + secret[-4:]
    assert secret not in json.dumps(public)
    assert listed.secret_value() == secret == ep.secret_value()


def test_adding_validates_secret_events_and_id(svc: WebhookService) -> None:
    with pytest.raises(ValidationFailed) as info:
        svc.endpoints.add(
            "http://127.0.0.1:9/", secret="not-a-secret", events=["screening.nope"], now=T0
        )
    assert {p.field for p in info.value.problems} == {"secret", "events"}
    with pytest.raises(ValidationFailed, match="bytes"):
        svc.endpoints.add("http://127.0.0.1:9/", secret="whsec_c2hvcnQ=", now=T0)
    with pytest.raises(ValidationFailed, match="events"):
        svc.endpoints.add("http://127.0.0.1:9/", events=[], now=T0)
    with pytest.raises(ValidationFailed, match="id"):
        svc.endpoints.add("http://127.0.0.1:9/", endpoint_id="crm", now=T0)
    svc.endpoints.add("http://127.0.0.1:9/", endpoint_id="ep_crm", now=T0)
    with pytest.raises(WebhookError, match="already exists"):
        svc.endpoints.add("http://127.0.0.1:9/", endpoint_id="ep_crm", now=T0)


def test_registration_refuses_private_targets_when_not_allowed(r: redis.Redis) -> None:
    strict = WebhookService(r, KEYS, allow_private=False)
    try:
        for url in (
            "https://127.0.0.1/hook",
            "https://localhost:8443/hook",  # a name that resolves to loopback
            "https://10.0.0.8/hook",
            "https://[fe80::1]/hook",
            "http://127.0.0.1/hook",
        ):
            with pytest.raises(UnsafeWebhookURL):
                strict.endpoints.add(url, now=T0)
        assert strict.endpoints.list() == []
    finally:
        strict.close()


def test_config_file_loads_and_reloads_idempotently(
    svc: WebhookService, tmp_path: Path, secret: str
) -> None:
    audit_secret = generate_secret()
    path = tmp_path / "webhooks.toml"
    path.write_text(
        f"""
        [delivery]
        retry_schedule = [1, 2, 3]

        [[endpoints]]
        id = "ep_crm"
        url = "http://127.0.0.1:9/crm"
        events = ["screening.completed"]
        secret_env = "TEST_CRM_SECRET"
        description = "CRM"

        [[endpoints]]
        url = "http://127.0.0.1:9/audit"
        secret = "{audit_secret}"
        """,
        encoding="utf-8",
    )
    config = load_config_file(path, environ={"TEST_CRM_SECRET": secret})
    assert config.retry_schedule == (1.0, 2.0, 3.0)
    first = svc.endpoints.sync(config, T0)
    assert first[0].id == "ep_crm"
    assert first[0].secret_value() == secret
    assert first[1].secret_value() == audit_secret

    svc.endpoints.disable(first[1].id, "410 earlier")
    again = svc.endpoints.sync(config, at(60))
    assert again[1].secret_value() == audit_secret
    assert again[1].id == first[1].id  # id derived from the URL, stable
    assert not again[1].enabled  # the file says nothing about enabled: stored state kept
    assert len(svc.endpoints.list()) == 2


def test_config_file_problems_name_the_place(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
        [[endpoints]]
        url = "http://127.0.0.1:9/x"
        secrt = "typo"
        events = ["screening.done"]

        [[endpoints]]
        url = "http://127.0.0.1:9/y"
        secret_env = "SURELY_NOT_SET_ANYWHERE"

        [[endpoints]]
        id = "ep_nosecret"
        url = "http://127.0.0.1:9/z"

        [[endpoints]]
        id = "ep_badsecret"
        url = "http://127.0.0.1:9/w"
        secret = "not-a-secret"
        """,
        encoding="utf-8",
    )
    with pytest.raises(ValidationFailed) as info:
        load_config_file(path, environ={})
    problems = {p.field: p.message for p in info.value.problems}
    assert set(problems) == {
        "bad.toml: endpoints[0].secrt",
        "bad.toml: endpoints[0].events",
        "bad.toml: endpoints[1].secret_env",
        "bad.toml: endpoints[2].secret",
        "bad.toml: endpoints[3].secret",
    }
    missing = problems["bad.toml: endpoints[2].secret"]
    assert missing.startswith("endpoint ep_nosecret (http://127.0.0.1:9/z): is required")
    assert "secret_env" in missing
    assert "SURELY_NOT_SET_ANYWHERE is not set" in problems["bad.toml: endpoints[1].secret_env"]
    assert "ep_badsecret" in problems["bad.toml: endpoints[3].secret"]
    assert "not-a-secret" not in str(info.value)  # a secret, even a bad one, is never echoed
    path.write_text("not = [toml", encoding="utf-8")
    with pytest.raises(ValidationFailed, match="invalid TOML"):
        load_config_file(path)


def write_config(path: Path, *entries: str) -> Path:
    path.write_text("\n".join(f"[[endpoints]]\n{e}\n" for e in entries), encoding="utf-8")
    return path


def test_load_webhook_config_reports_added_updated_and_unchanged(
    svc: WebhookService, rx: WebhookReceiver, secret: str, tmp_path: Path
) -> None:
    """`dialer webhooks load FILE`: an upsert by id with a report; the file's secret is the one
    the receiver verifies with."""
    manual = svc.endpoints.add("http://127.0.0.1:9/manual", endpoint_id="ep_manual", now=T0)
    env = {"CRM_SECRET": secret}
    crm = f'id = "ep_crm"\nurl = "{rx.url("/crm")}"\nsecret_env = "CRM_SECRET"'
    audit_secret = generate_secret()
    audit = f'id = "ep_audit"\nurl = "{rx.url("/audit")}"\nsecret = "{audit_secret}"'
    path = write_config(tmp_path / "webhooks.toml", crm, audit)

    first = load_webhook_config(svc.endpoints, path, now=T0, environ=env)
    assert (first.added, first.updated, first.unchanged) == (("ep_crm", "ep_audit"), (), ())
    assert first.not_in_file == (manual.id,)
    assert [e.url for e in first.entries] == [rx.url("/crm"), rx.url("/audit")]
    assert secret not in repr(first) and audit_secret not in repr(first)

    again = load_webhook_config(svc.endpoints, path, now=at(60), environ=env)
    assert (again.added, again.updated, again.unchanged) == ((), (), ("ep_crm", "ep_audit"))

    rotated = generate_secret()
    path = write_config(
        tmp_path / "webhooks.toml",
        crm + '\nevents = ["screening.completed"]',
        f'id = "ep_audit"\nurl = "{rx.url("/audit")}"\nsecret = "{rotated}"',
    )
    changed = load_webhook_config(svc.endpoints, path, now=at(120), environ=env)
    assert (changed.added, changed.updated, changed.unchanged) == ((), ("ep_crm", "ep_audit"), ())
    assert svc.endpoints.get("ep_crm").events == (COMPLETED,)
    assert svc.endpoints.get("ep_audit").secret_value() == rotated
    assert svc.endpoints.get("ep_crm").created_at == T0  # an update keeps the creation time

    rx.set_secret("/audit", rotated)
    for delivery_id in svc.emit(COMPLETED, DATA, at(130)):
        if svc.get(delivery_id).endpoint_id != manual.id:
            assert svc.deliver(delivery_id, at(130)).result == "delivered"
    assert {r.path for r in rx.accepted()} == {"/crm", "/audit"}


def test_load_webhook_config_stores_nothing_when_one_endpoint_is_refused(
    r: redis.Redis, tmp_path: Path, secret: str
) -> None:
    strict = WebhookService(r, KEYS, allow_networks=LOOPBACK_NETWORKS)
    try:
        path = write_config(
            tmp_path / "webhooks.toml",
            f'id = "ep_ok"\nurl = "http://127.0.0.1:9/ok"\nsecret = "{secret}"',
            f'id = "ep_private"\nurl = "https://10.0.0.1/hook"\nsecret = "{secret}"',
            f'id = "ep_badevents"\nurl = "http://127.0.0.1:9/x"\nsecret = "{secret}"\n'
            'events = ["screening.nope"]',
        )
        with pytest.raises(ValidationFailed) as info:
            load_webhook_config(strict.endpoints, path, now=T0)
        fields = [p.field for p in info.value.problems]
        assert fields == ["webhooks.toml: endpoints[2].events"]  # the file itself is checked first
        path = write_config(
            tmp_path / "webhooks.toml",
            f'id = "ep_ok"\nurl = "http://127.0.0.1:9/ok"\nsecret = "{secret}"',
            f'id = "ep_private"\nurl = "https://10.0.0.1/hook"\nsecret = "{secret}"',
        )
        with pytest.raises(ValidationFailed) as info:
            load_webhook_config(strict.endpoints, path, now=T0)
        [problem] = info.value.problems
        assert problem.field == "webhooks.toml: endpoints[1].url"
        assert "ep_private" in problem.message and "10.0.0.1" in problem.message
        assert strict.endpoints.list() == []  # all or nothing
    finally:
        strict.close()


# -- emit -----------------------------------------------------------------------------------------


def test_emit_fans_out_to_matching_enabled_endpoints_idempotently(
    svc: WebhookService, r: redis.Redis
) -> None:
    every = svc.endpoints.add("http://127.0.0.1:9/all", now=T0)
    completed = svc.endpoints.add("http://127.0.0.1:9/done", events=[COMPLETED], now=T0)
    off = svc.endpoints.add("http://127.0.0.1:9/off", now=T0)
    svc.endpoints.disable(off.id)

    ids = svc.emit(COMPLETED, DATA, T0, event_id="evt_c-1_1_completed")
    assert len(ids) == 2
    by_endpoint = {svc.get(i).endpoint_id: svc.get(i) for i in ids}
    assert set(by_endpoint) == {every.id, completed.id}
    d = by_endpoint[every.id]
    assert d.status is DeliveryStatus.PENDING and d.tries == 0
    assert d.message_id.startswith("msg_")
    assert d.message_id == by_endpoint[completed.id].message_id  # one message, two deliveries
    assert d.body() == {"type": COMPLETED, "timestamp": "2025-03-04T12:00:00Z", "data": DATA}

    # The same event again (a redelivered results message): nothing new.
    assert svc.emit(COMPLETED, DATA, at(1), event_id="evt_c-1_1_completed") == []
    assert len(svc.emit(ATTEMPT, DATA, T0)) == 1  # only the "*" endpoint wants attempts
    assert len(svc.emit(RETRY_SCHEDULED, DATA, T0, event_id="evt_c-1_1_retry_scheduled")) == 1
    assert svc.stats().emitted == 4
    # A safety net: every new delivery is in the due-set (lease later), so a lost task is resent.
    assert r.zscore(KEYS.due_webhooks, ids[0]) == at(svc.lease_s).timestamp()


def test_emit_without_endpoints_stores_nothing(svc: WebhookService, r: redis.Redis) -> None:
    assert svc.emit(COMPLETED, DATA, T0) == []
    assert r.zcard(KEYS.due_webhooks) == 0


# -- delivery -------------------------------------------------------------------------------------


def test_delivery_is_signed_and_verified(
    svc: WebhookService, rx: WebhookReceiver, secret: str, tmp_path: Path
) -> None:
    add(svc, rx, secret)
    delivery_id = emit_one(svc)
    outcome = svc.deliver(delivery_id, T0)
    assert outcome.result == "delivered" and outcome.status_code == 200 and outcome.tries == 1

    [got] = rx.accepted("/crm")
    assert got.verified
    assert got.headers["content-type"] == "application/json"
    assert Webhook(secret).verify(got.body, got.headers) == got.json()
    d = svc.get(delivery_id)
    assert got.webhook_id == d.message_id
    assert got.body == d.payload.encode()
    assert got.json()["data"] == DATA
    assert d.status is DeliveryStatus.DELIVERED and d.delivered_at == T0
    written = json.loads((tmp_path / "received" / f"{d.message_id}.json").read_text())
    assert written == got.json()
    assert svc.stats().delivered == 1
    assert svc.pop_due(at(10_000)) == []  # nothing left to do

    # A late duplicate task for the same delivery sends nothing.
    assert svc.deliver(delivery_id, at(1)).result == "skipped"
    assert len(rx.received()) == 1


def test_wrong_secret_is_rejected_by_the_receiver(svc: WebhookService, rx: WebhookReceiver) -> None:
    svc.endpoints.add(rx.url("/crm"), secret=generate_secret(), now=T0)
    outcome = svc.deliver(emit_one(svc), T0)
    assert outcome.result == "retry_scheduled" and outcome.status_code == 401
    [got] = rx.received()
    assert not got.verified and "verification failed" in (got.error or "")


def test_three_failures_then_success_is_accepted_once_with_one_id(
    svc: WebhookService, rx: WebhookReceiver, secret: str
) -> None:
    add(svc, rx, secret)
    rx.script("/crm", 500, 502, Reply(404))
    delivery_id = emit_one(svc)

    now = T0
    expected_waits = [5, 300, 1800]
    for wait in expected_waits:
        outcome = svc.deliver(delivery_id, now)
        assert outcome.result == "retry_scheduled"
        assert outcome.next_try_at == now + timedelta(seconds=wait)
        assert svc.get(delivery_id).status is DeliveryStatus.FAILED
        assert svc.pop_due(now + timedelta(seconds=wait - 1)) == []  # not before it is due
        assert svc.deliver(delivery_id, now + timedelta(seconds=1)).result == "skipped"
        now = now + timedelta(seconds=wait)
        assert svc.pop_due(now) == [delivery_id]
    assert svc.deliver(delivery_id, now).result == "delivered"

    tries = rx.received("/crm")
    assert [t.status for t in tries] == [500, 502, 404, 200]
    assert all(t.verified for t in tries)
    assert len({t.webhook_id for t in tries}) == 1
    assert len(rx.accepted("/crm")) == 1
    d = svc.get(delivery_id)
    assert d.tries == 4 and d.status is DeliveryStatus.DELIVERED
    stats = svc.stats()
    assert (stats.delivered, stats.failed, stats.retried, stats.dead) == (1, 3, 3, 0)


def test_retry_after_is_honoured_on_429_and_503(
    svc: WebhookService, rx: WebhookReceiver, secret: str
) -> None:
    add(svc, rx, secret)
    http_date = format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)
    rx.script("/crm", Reply(429, retry_after="120"), Reply(503, retry_after="1"), Reply(429))
    delivery_id = emit_one(svc)

    first = svc.deliver(delivery_id, T0)
    assert first.next_try_at == at(120)  # Retry-After (120 s) beats the schedule (5 s)
    assert svc.pop_due(at(119)) == []
    second = svc.deliver(svc.pop_due(at(120))[0], at(120))
    assert second.next_try_at == at(120 + 300)  # the schedule (300 s) beats Retry-After (1 s)
    third = svc.deliver(delivery_id, at(420))
    assert third.next_try_at == at(420 + 1800)  # 429 without Retry-After: the schedule

    rx.script("/crm", Reply(503, retry_after=http_date))
    fourth = svc.deliver(delivery_id, at(2220))
    assert fourth.result == "retry_scheduled"
    assert fourth.next_try_at is not None and fourth.next_try_at >= at(2220 + 7200)


def test_410_disables_the_endpoint_and_dead_letters(
    svc: WebhookService, rx: WebhookReceiver, secret: str
) -> None:
    endpoint_id = add(svc, rx, secret)
    rx.script("/crm", 410)
    delivery_id = emit_one(svc)
    outcome = svc.deliver(delivery_id, T0)
    assert outcome.result == "dead" and outcome.endpoint_disabled
    endpoint = svc.endpoints.get(endpoint_id)
    assert not endpoint.enabled and "410" in (endpoint.disabled_reason or "")
    [dead] = svc.dead_letters()
    assert dead.id == delivery_id and "gone" in (dead.dead_reason or "")
    assert svc.stats().gone == 1
    assert svc.emit(COMPLETED, DATA, at(1)) == []  # no more deliveries to a gone endpoint
    with pytest.raises(WebhookError, match="disabled"):
        svc.replay(delivery_id, now=at(2))
    svc.endpoints.enable(endpoint_id)
    assert svc.replay(delivery_id, now=at(3)) == [delivery_id]
    assert svc.deliver(delivery_id, at(3)).result == "delivered"


def test_exhaustion_dead_letters_and_replay_delivers_with_the_same_id(
    svc: WebhookService, rx: WebhookReceiver, secret: str
) -> None:
    endpoint_id = add(svc, rx, secret)
    rx.script("/crm", *[500] * 8)
    delivery_id = emit_one(svc)

    now = T0
    for wait in SCHEDULE:
        outcome = svc.deliver(delivery_id, now)
        assert outcome.result == "retry_scheduled"
        assert outcome.next_try_at == now + timedelta(seconds=wait)
        now = now + timedelta(seconds=wait)
        assert svc.pop_due(now) == [delivery_id]
    last = svc.deliver(delivery_id, now)
    assert last.result == "dead" and last.tries == 8
    assert "retries exhausted after 8 tries" in (last.reason or "")
    assert svc.pop_due(now + timedelta(days=30)) == []

    [dead] = svc.dead_letters()
    assert dead.id == delivery_id and dead.status is DeliveryStatus.DEAD
    assert dead.dead_at == now and dead.last_status_code == 500
    assert svc.dead_letters(endpoint_id="ep_other") == []
    assert svc.dead_letters(since=now + timedelta(seconds=1)) == []
    assert svc.stats().dead == 1 and svc.stats().dead_letters == 1

    replay_at = now + timedelta(hours=1)
    assert svc.replay(delivery_id, now=replay_at) == [delivery_id]
    assert svc.replay(delivery_id, now=replay_at) == []  # already replayed: nothing to do
    assert svc.dead_letters() == []
    assert svc.pop_due(replay_at) == [delivery_id]
    assert svc.deliver(delivery_id, replay_at).result == "delivered"

    tries = rx.received("/crm")
    assert len(tries) == 9 and all(t.verified for t in tries)
    assert {t.webhook_id for t in tries} == {svc.get(delivery_id).message_id}
    assert len(rx.accepted()) == 1
    assert svc.endpoints.get(endpoint_id).enabled  # exhaustion does not disable the endpoint


def test_replay_by_endpoint_and_since(r: redis.Redis, rx: WebhookReceiver, secret: str) -> None:
    svc = WebhookService(
        r, KEYS, allow_networks=LOOPBACK_NETWORKS, timeout_s=1.0, retry_schedule=()
    )
    try:
        a = add(svc, rx, secret, "/a")
        b = add(svc, rx, secret, "/b")
        rx.script("/a", *[500] * 2)
        rx.script("/b", *[500] * 2)
        first = svc.emit(COMPLETED, DATA, T0)  # one delivery per endpoint
        for delivery_id in first:
            assert svc.deliver(delivery_id, T0).result == "dead"  # empty schedule: one try
        second = svc.emit(COMPLETED, DATA, at(600))
        for delivery_id in second:
            assert svc.deliver(delivery_id, at(600)).result == "dead"
        assert len(svc.dead_letters()) == 4

        by_a = svc.replay(endpoint_id=a, now=at(700))
        assert sorted(by_a) == sorted(i for i in first + second if svc.get(i).endpoint_id == a)
        recent = svc.replay(since=at(600), now=at(800))
        assert recent == [i for i in second if svc.get(i).endpoint_id == b]
        [left] = svc.dead_letters()
        assert left.endpoint_id == b and left.id in first
        with pytest.raises(ValueError):
            svc.replay(now=at(900))
        with pytest.raises(DeliveryNotFound):
            svc.replay("dlv_" + "0" * 24, now=at(900))
        for delivery_id in svc.pop_due(at(800)):
            assert svc.deliver(delivery_id, at(800)).result == "delivered"
        assert len(rx.accepted()) == 3
    finally:
        svc.close()


def test_timeouts_connection_errors_and_redirects_are_retried(
    svc: WebhookService, rx: WebhookReceiver, secret: str
) -> None:
    add(svc, rx, secret)
    rx.script("/crm", Reply(200, delay_s=1.5), Reply(302, location=rx.url("/elsewhere")))
    delivery_id = emit_one(svc)
    timed_out = svc.deliver(delivery_id, T0)  # the service's timeout is 1 s
    assert timed_out.result == "retry_scheduled" and timed_out.status_code is None
    assert "timeout" in (timed_out.error or "")
    redirected = svc.deliver(delivery_id, at(5))
    assert redirected.result == "retry_scheduled" and redirected.status_code == 302
    assert "redirects are not followed" in (redirected.error or "")
    assert rx.received("/elsewhere") == []

    closed = svc.endpoints.add("http://127.0.0.1:1/nobody-listens", secret=secret, now=T0)
    refused = svc.deliver(
        next(i for i in svc.emit(ATTEMPT, DATA, T0) if svc.get(i).endpoint_id == closed.id), T0
    )
    assert refused.result == "retry_scheduled" and "ConnectError" in (refused.error or "")


@pytest.mark.parametrize(
    "trickle",
    [
        Reply(200, body=b"accepted", trickle="all", trickle_gap_s=0.1),  # slow status + headers
        Reply(200, body=b"accepted" * 5, trickle="body", trickle_gap_s=0.1),  # trickled body
    ],
    ids=["headers", "body"],
)
def test_a_reply_trickled_past_the_timeout_is_a_timeout_not_a_delivery(
    svc: WebhookService, rx: WebhookReceiver, secret: str, trickle: Reply
) -> None:
    """The timeout (1 s here, 15 s in production) is for the whole try: a receiver that sends
    a byte every 0.1 s never trips a per-read timeout, yet its 2xx comes too late to count."""
    add(svc, rx, secret)
    rx.script("/crm", trickle)
    delivery_id = emit_one(svc)
    started = time.monotonic()
    outcome = svc.deliver(delivery_id, T0)
    took = time.monotonic() - started
    assert outcome.result == "retry_scheduled" and outcome.status_code is None
    assert "timeout after 1 s" in (outcome.error or "")
    assert 0.9 <= took < 1.6, f"the try took {took:.2f} s"
    assert svc.get(delivery_id).status is DeliveryStatus.FAILED

    retried = svc.deliver(delivery_id, at(5))  # the receiver answers promptly now
    assert retried.result == "delivered"
    tries = rx.received("/crm")
    assert len(tries) == 2 and tries[0].webhook_id == tries[1].webhook_id


def test_post_once_reports_the_elapsed_time_of_a_trickled_try(
    svc: WebhookService, rx: WebhookReceiver, secret: str
) -> None:
    rx.script("/crm", Reply(200, body=b"x" * 50, trickle="body", trickle_gap_s=0.05))
    headers = signed_headers(secret, "msg_trickle", datetime.now(UTC), "{}")
    result = post_once(svc.http, rx.url("/crm"), b"{}", headers, timeout_s=0.5)
    assert result.status_code is None and "ReadTimeout" in (result.error or "")
    assert 0.45 <= result.elapsed_s < 1.0
    # A prompt reply on the same client afterwards is not affected by the spent deadline.
    fine = post_once(svc.http, rx.url("/crm"), b"{}", headers, timeout_s=0.5)
    assert fine.status_code == 200 and fine.elapsed_s < 0.5


def test_disabled_or_removed_endpoint_dead_letters_pending_deliveries(
    svc: WebhookService, rx: WebhookReceiver, secret: str
) -> None:
    a = add(svc, rx, secret, "/a")
    b = add(svc, rx, secret, "/b")
    ids = {svc.get(i).endpoint_id: i for i in svc.emit(COMPLETED, DATA, T0)}
    svc.endpoints.disable(a, "paused by ops")
    svc.endpoints.remove(b)
    da = svc.deliver(ids[a], T0)
    db = svc.deliver(ids[b], T0)
    assert (da.result, db.result) == ("dead", "dead")
    assert "paused by ops" in (da.reason or "") and db.reason == "endpoint removed"
    assert rx.received() == []
    assert svc.get(ids[a]).tries == 0  # no HTTP try was made
    assert svc.replay(endpoint_id=a, now=at(1)) == []  # still disabled: stays dead


def test_send_time_guard_refuses_what_registration_allowed(
    r: redis.Redis, rx: WebhookReceiver, secret: str
) -> None:
    """Registered while loopback targets were allowed; a worker that does not allow them refuses
    to connect (the check is repeated at send time, per connection)."""
    lenient = WebhookService(r, KEYS, allow_networks=LOOPBACK_NETWORKS, timeout_s=1.0)
    strict = WebhookService(r, KEYS, allow_private=False, timeout_s=1.0)
    try:
        lenient.endpoints.add(rx.url("/crm"), secret=secret, now=T0)
        delivery_id = emit_one(lenient)
        outcome = strict.deliver(delivery_id, T0)
        assert outcome.result == "retry_scheduled"
        assert "URL guard" in (outcome.error or "") and "loopback" in (outcome.error or "")
        assert rx.received() == []
    finally:
        lenient.close()
        strict.close()


def test_dns_rebinding_is_caught_at_connect_time(
    r: redis.Redis, rx: WebhookReceiver, secret: str
) -> None:
    """The name is public when registered and loopback when the worker connects: the pinned
    connect resolves through the guard, so the request never leaves."""
    answer = ["93.184.216.34"]
    guard = UrlGuard(allow_private=False, resolver=lambda h, p: list(answer), cache_ttl_s=0)
    svc = WebhookService(r, KEYS, guard=guard, timeout_s=1.0)
    try:
        svc.endpoints.add(f"https://rebind.example:{rx.port}/crm", secret=secret, now=T0)
        answer[:] = ["127.0.0.1"]
        outcome = svc.deliver(emit_one(svc), T0)
        assert outcome.result == "retry_scheduled"
        assert "rebind.example resolves to 127.0.0.1" in (outcome.error or "")
        assert rx.received() == []
    finally:
        svc.close()


@pytest.mark.parametrize("private", ["10.0.0.1", "169.254.169.254", "100.64.0.1"])
def test_a_loopback_allow_list_delivers_to_loopback_and_refuses_other_private_targets(
    r: redis.Redis, rx: WebhookReceiver, secret: str, private: str
) -> None:
    """DIALER_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8,::1/128: the receiver on loopback gets its
    delivery; a private, metadata or CGNAT address is refused at registration (literal or by
    name) and at connect time (a name that starts resolving to it)."""
    answer = ["127.0.0.1"]

    def resolver(host: str, port: int) -> list[str]:
        return [host] if host[0].isdigit() else list(answer)

    guard = UrlGuard(allow_networks=LOOPBACK_NETWORKS, resolver=resolver, cache_ttl_s=0)
    svc = WebhookService(r, KEYS, guard=guard, timeout_s=1.0)
    try:
        svc.endpoints.add(f"http://crm.test:{rx.port}/crm", secret=secret, now=T0)
        assert svc.deliver(emit_one(svc), T0).result == "delivered"

        for url in (f"https://{private}/hook", "https://crm.test/elsewhere"):
            answer[:] = [private]
            with pytest.raises(UnsafeWebhookURL, match=private.replace(".", r"\.")):
                svc.endpoints.add(url, secret=secret, now=T0)
        assert len(svc.endpoints.list()) == 1

        # The registered name now points at the private address. Another worker (a new
        # connection: a kept-alive one stays bound to the address vetted when it was opened).
        answer[:] = [private]
        worker = WebhookService(r, KEYS, guard=guard, timeout_s=1.0)
        try:
            outcome = worker.deliver(emit_one(worker, now=at(1)), at(1))
        finally:
            worker.close()
        assert outcome.result == "retry_scheduled"
        assert f"crm.test resolves to {private}" in (outcome.error or "")
        assert len(rx.received()) == 1
    finally:
        svc.close()


def test_connections_go_to_the_address_the_guard_resolved(
    r: redis.Redis, rx: WebhookReceiver, secret: str
) -> None:
    """Pinning: the client connects to the guard's answer, not to a second DNS lookup (this name
    exists only in the guard's resolver)."""
    guard = UrlGuard(allow_networks=LOOPBACK_NETWORKS, resolver=lambda h, p: ["127.0.0.1"])
    svc = WebhookService(r, KEYS, guard=guard, timeout_s=1.0)
    try:
        svc.endpoints.add(f"http://crm.pinned.invalid:{rx.port}/crm", secret=secret, now=T0)
        assert svc.deliver(emit_one(svc), T0).result == "delivered"
        [got] = rx.accepted()
        assert got.headers["host"] == f"crm.pinned.invalid:{rx.port}"
    finally:
        svc.close()


# -- the due-set ----------------------------------------------------------------------------------


def test_pop_due_is_safe_with_concurrent_callers(svc: WebhookService) -> None:
    svc.endpoints.add("http://127.0.0.1:9/a", now=T0)
    ids = [emit_one(svc, now=T0) for _ in range(300)]
    later = at(svc.lease_s)
    results: list[list[str]] = []
    lock = threading.Lock()

    def worker() -> None:
        while batch := svc.pop_due(later, limit=7):
            with lock:
                results.append(batch)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [i for batch in results for i in batch]
    assert sorted(taken) == sorted(ids)  # every id exactly once
    assert svc.pop_due(later) == []
    assert sorted(svc.pop_due(later + timedelta(seconds=svc.lease_s))) == sorted(
        ids
    )  # leases ran out


def test_two_workers_on_one_delivery_send_once(
    svc: WebhookService, rx: WebhookReceiver, secret: str
) -> None:
    add(svc, rx, secret)
    rx.script("/crm", Reply(200, delay_s=0.3))
    delivery_id = emit_one(svc)
    outcomes: list[str] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(svc.deliver(delivery_id, T0).result))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["delivered", "skipped", "skipped"]
    assert len(rx.received()) == 1


def test_stats_count_what_happened(svc: WebhookService, rx: WebhookReceiver, secret: str) -> None:
    add(svc, rx, secret)
    rx.script("/crm", 500)
    delivery_id = emit_one(svc)
    svc.deliver(delivery_id, T0)
    svc.deliver(delivery_id, at(5))
    stats = svc.stats()
    assert (stats.emitted, stats.delivered, stats.failed, stats.retried) == (1, 1, 1, 1)
    assert (stats.dead, stats.due, stats.dead_letters) == (0, 0, 0)


# -- the Celery task and its glue -----------------------------------------------------------------


@pytest.fixture()
def task_runtime(
    r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[support.TestRuntime]:
    """tasks.webhooks on the test Redis: a fixed-clock Runtime, and the Celery app's broker
    pointed at the test Redis (messages land in the real "webhooks" list)."""
    import tasks.webhooks as task_module
    from tasks.app import app

    tr = support.make_runtime(
        r, T0, webhook_allow_networks=LOOPBACK_NETWORKS, webhook_timeout_s=1.0
    )
    monkeypatch.setattr(task_module, "runtime", lambda: tr.runtime)
    monkeypatch.setattr(task_module, "_service", None)
    monkeypatch.setattr(app.conf, "broker_url", redis_url)
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    try:
        yield tr
    finally:
        if task_module._service is not None:
            task_module._service[1].close()


def queued_delivery_ids(r: redis.Redis) -> list[str]:
    """The delivery ids of every `dialer.webhooks.deliver` message on the queue, oldest first."""
    out = []
    for item in reversed(r.lrange("webhooks", 0, -1)):
        envelope = json.loads(item)
        assert envelope["headers"]["task"] == "dialer.webhooks.deliver"
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        assert kwargs == {}
        out.append(args[0])
    return out


def test_task_dead_letters_malformed_messages(
    task_runtime: support.TestRuntime, r: redis.Redis
) -> None:
    from tasks.webhooks import deliver

    assert deliver("not-an-id") == "malformed"
    assert deliver(None) == "malformed"
    assert deliver("dlv_" + "0" * 24, surprise=1) == "malformed"
    records = [json.loads(x) for x in r.lrange(KEYS.dead_letters, 0, -1)]
    assert [x["source"] for x in records] == ["webhooks"] * 3
    assert "not a delivery id" in records[0]["reason"]
    assert "not-an-id" in records[0]["payload"]
    assert records[2]["reason"] == "unexpected arguments"
    # A well-formed id that does not exist is not malformed: there is simply nothing to do.
    assert deliver("dlv_" + "0" * 24) == "skipped"


def test_sink_emits_and_enqueues_then_the_task_delivers(
    task_runtime: support.TestRuntime, r: redis.Redis, rx: WebhookReceiver, secret: str
) -> None:
    from tasks.webhooks import deliver, send_due_deliveries, service_for, webhook_sink

    svc = service_for(task_runtime.runtime)
    svc.endpoints.add(rx.url("/crm"), secret=secret, now=T0)
    sink = webhook_sink(task_runtime.runtime)
    sink.emit(COMPLETED, DATA, event_id="evt_c-1_1_completed", now=T0)
    sink.emit(COMPLETED, DATA, event_id="evt_c-1_1_completed", now=T0)  # a re-emit: no new task
    [delivery_id] = queued_delivery_ids(r)
    r.delete("webhooks")

    rx.script("/crm", 503)
    assert deliver(delivery_id) == "retry_scheduled"
    assert send_due_deliveries(at(4)) == 0
    assert send_due_deliveries(at(5)) == 1
    assert queued_delivery_ids(r) == [delivery_id]
    task_runtime.clock.set(at(5))
    assert deliver(delivery_id) == "delivered"
    [got] = rx.accepted("/crm")
    assert got.json()["data"] == DATA


def test_a_result_recorded_twice_reaches_each_endpoint_once_per_event(
    task_runtime: support.TestRuntime, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end, without the recording sink's own de-duplication: two endpoints with their
    own secrets, the same agent result sent twice through the results task, every queued
    delivery task run, then a later beat pass. Each endpoint receives exactly one
    screening.attempt and one screening.completed (counted on the wire, not after the
    receiver's de-duplication), and nothing more arrives afterwards."""
    import tasks.results as results_task
    from tasks.webhooks import deliver, send_due_deliveries, service_for, webhook_sink

    rt = task_runtime.runtime
    rt.webhook_sink = webhook_sink(rt)  # as tasks.context.runtime() wires a worker
    monkeypatch.setattr(results_task, "runtime", lambda: rt)
    secrets = {"/crm": generate_secret(), "/ats": generate_secret()}
    with WebhookReceiver(secrets) as rx:
        svc = service_for(rt)
        svc.endpoints.add(rx.url("/crm"), secret=secrets["/crm"], now=T0)  # every event
        svc.endpoints.add(rx.url("/ats"), secret=secrets["/ats"], events=[ATTEMPT, COMPLETED])
        call_id = rt.intake.submit(seed_request("twice-1"), T0).call_id
        attempt = task_runtime.start_dialing(call_id)
        result = CandidateData(
            call_id=call_id, status=Status.COMPLETED, attempt=attempt, consent_given=True
        )
        message = ResultMessage.from_agent(result, T0).model_dump(mode="json")

        assert results_task.record(message=message) == "final"
        assert results_task.record(message=message) == "duplicate"  # a redelivered message
        queued = queued_delivery_ids(r)
        assert len(queued) == 4  # two events x two endpoints, none for the second copy
        r.delete("webhooks")
        assert [deliver(delivery_id) for delivery_id in queued] == ["delivered"] * 4

        # Later: the same message a third time, a beat pass past every lease, and the
        # delivery tasks again (a redelivered Celery message): nothing more is sent.
        later = at(3600)
        task_runtime.clock.set(later)
        assert results_task.record(message=message) == "duplicate"
        assert queued_delivery_ids(r) == []
        assert send_due_deliveries(later) == 0
        assert [deliver(delivery_id) for delivery_id in queued] == ["skipped"] * 4

        received = rx.received()
        assert len(received) == 4 and all(x.accepted and not x.duplicate for x in received)
        for path in secrets:
            got = rx.received(path)
            assert sorted(x.json()["type"] for x in got) == [ATTEMPT, COMPLETED]
            assert len({x.webhook_id for x in got}) == 2
            assert all(x.json()["data"]["call_id"] == call_id for x in got)
        # One message per event, signed per endpoint: the same webhook-id on both endpoints.
        by_type = {(x.path, x.json()["type"]): x.webhook_id for x in received}
        assert by_type[("/crm", COMPLETED)] == by_type[("/ats", COMPLETED)]
        assert by_type[("/crm", ATTEMPT)] == by_type[("/ats", ATTEMPT)]


def test_the_worker_service_applies_the_config_file(
    r: redis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """DIALER_WEBHOOK_CONFIG: endpoints stored when the worker's service is built, the retry
    schedule used; an endpoint the guard refuses is reported and does not block the others."""
    import tasks.webhooks as task_module

    path = tmp_path / "webhooks.toml"
    path.write_text(
        f"""
        [delivery]
        retry_schedule = [7]

        [[endpoints]]
        id = "ep_refused"
        url = "ftp://127.0.0.1/x"
        secret = "{secret}"

        [[endpoints]]
        id = "ep_crm"
        url = "http://127.0.0.1:1/crm"
        secret = "{secret}"
        """,
        encoding="utf-8",
    )
    tr = support.make_runtime(r, T0, webhook_allow_networks=LOOPBACK_NETWORKS, webhook_config=path)
    monkeypatch.setattr(task_module, "_service", None)
    svc = task_module.service_for(tr.runtime)
    try:
        assert svc.retry_schedule == (7.0,)
        assert [e.id for e in svc.endpoints.list()] == ["ep_crm"]
        delivery_id = emit_one(svc)
        assert svc.deliver(delivery_id, T0).next_try_at == at(7)
        assert svc.deliver(delivery_id, at(7)).result == "dead"
    finally:
        svc.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI for a cert")
def test_pinned_https_still_verifies_the_certificate_against_the_name(
    r: redis.Redis, secret: str, tmp_path: Path
) -> None:
    """Pinning only changes where the TCP connection goes; TLS still checks the certificate
    against the URL's host name (SNI), so a pinned IP cannot be used to impersonate a host."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=crm.test",
         "-addext", "subjectAltName=DNS:crm.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    guard = UrlGuard(allow_networks=LOOPBACK_NETWORKS, resolver=lambda h, p: ["127.0.0.1"])
    http = make_client(guard, 1.0, verify=str(cert))
    svc = WebhookService(r, KEYS, guard=guard, http=http, timeout_s=1.0)
    try:
        with WebhookReceiver(secret, tls=server_tls) as rx:
            svc.endpoints.add(f"https://crm.test:{rx.port}/crm", secret=secret, now=T0)
            assert svc.deliver(emit_one(svc), T0).result == "delivered"
            svc.endpoints.add(
                f"https://other.test:{rx.port}/x", secret=secret, endpoint_id="ep_other", now=T0
            )
            ids = svc.emit(ATTEMPT, DATA, at(1))
            other = next(i for i in ids if svc.get(i).endpoint_id == "ep_other")
            outcome = svc.deliver(other, at(1))
            assert outcome.result == "retry_scheduled"
            assert "CERTIFICATE_VERIFY_FAILED" in (outcome.error or "")
            assert len(rx.accepted()) == 1
    finally:
        http.close()


def test_the_config_file_example_in_the_integration_guide_parses(secret: str) -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "INTEGRATION.md"
    section = guide.read_text(encoding="utf-8").split("### Endpoints from a file", 1)[1]
    example = section.split("```toml", 1)[1].split("```", 1)[0]
    config = parse_config(tomllib.loads(example), environ={"CRM_WEBHOOK_SECRET": secret})
    [spec] = config.endpoints
    assert (spec.endpoint_id, spec.secret, spec.events) == ("ep_crm", secret, (COMPLETED,))
    assert config.retry_schedule == tuple(float(s) for s in SCHEDULE)
    with pytest.raises(ValidationFailed, match="CRM_WEBHOOK_SECRET is not set"):
        parse_config(tomllib.loads(example), environ={})
