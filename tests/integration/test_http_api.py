"""The HTTP API through a real uvicorn server on 127.0.0.1, with httpx, on real Redis.

Every route is exercised (the last test checks that the list below covers the app's routes), with
auth failures, pagination and filters, error bodies, and the seeds/002 request example verbatim.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from standardwebhooks.webhooks import Webhook

from dialer import metrics
from dialer.apikeys import ApiKeyStore
from dialer.dialing import room_name
from dialer.http import create_app
from dialer.messages import ResultMessage
from dialer.models import CandidateData, Status, TranscriptTurn
from dialer.runtime import Runtime
from dialer.settings import Settings
from dialer.webhooks import LOOPBACK_NETWORKS, WebhookService, generate_secret
from dialer.webhooks.receiver import Reply, WebhookReceiver
from tests.support.http import serve
from tests.support.runtime import TestRuntime, make_runtime
from tests.support.seed import seed_request

BRUSSELS = ZoneInfo("Europe/Brussels")
# Wednesday 2026-03-04 10:00 in Brussels: inside the default calling window.
WED_10 = datetime(2026, 3, 4, 10, 0, tzinfo=BRUSSELS).astimezone(UTC)

# seeds/002_*: "Local test example", verbatim.
SEED_002_QUESTIONS = [
    "What is your first and last name?",
    "What is your company name?",
    "Do you prefer a morning or afternoon meeting?",
]
SEED_002_BODY: dict[str, Any] = {
    "to": "+15551230000",
    "recipientName": "Jane Doe",
    "rowIndex": 12,
    "questions": [
        "What is your first and last name?",
        "What is your company name?",
        "Do you prefer a morning or afternoon meeting?",
    ],
}


@pytest.fixture(scope="module")
def shared(redis_url: str) -> Iterator[tuple[TestRuntime, WebhookService, str]]:
    """One server for the module (each test still gets an empty database from `r`)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    runtime = make_runtime(client, WED_10, webhook_allow_networks=LOOPBACK_NETWORKS)
    service = WebhookService(
        client, runtime.runtime.keys, allow_networks=LOOPBACK_NETWORKS, timeout_s=3
    )
    app = create_app(runtime.runtime, webhooks=service, auth=True, broker_url=redis_url)
    with serve(app) as url:
        yield runtime, service, url
    service.close()
    client.close()


@pytest.fixture()
def t(r: redis.Redis, shared: tuple[TestRuntime, WebhookService, str]) -> TestRuntime:
    runtime = shared[0]
    runtime.clock.set(WED_10)
    return runtime


@pytest.fixture()
def webhooks(shared: tuple[TestRuntime, WebhookService, str]) -> WebhookService:
    return shared[1]


@pytest.fixture()
def base(t: TestRuntime, shared: tuple[TestRuntime, WebhookService, str]) -> str:
    return shared[2]


def make_key(t: TestRuntime, *scopes: str) -> dict[str, str]:
    _, token = ApiKeyStore(t.runtime.client, t.runtime.keys).create(scopes, name="test")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def admin(t: TestRuntime) -> dict[str, str]:
    return make_key(t, "admin")


@pytest.fixture()
def api(base: str, admin: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers=admin, timeout=20) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    error: dict[str, Any] = body["error"]
    return error


def field_names(response: httpx.Response) -> set[str]:
    return {f["field"] for f in error_of(response)["fields"]}


# -- auth ----------------------------------------------------------------------------------------


def test_no_key_is_401_with_a_clear_body(base: str) -> None:
    response = httpx.get(f"{base}/v1/screenings")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = error_of(response)
    assert error["code"] == "unauthorized"
    assert "dialer apikeys create" in error["message"]


def test_unknown_and_revoked_keys_are_401(base: str, t: TestRuntime) -> None:
    bogus = {"Authorization": "Bearer dk_000000000000_" + "x" * 43}
    assert httpx.get(f"{base}/v1/screenings", headers=bogus).status_code == 401
    store = ApiKeyStore(t.runtime.client, t.runtime.keys)
    key, token = store.create(["screenings:read"])
    ok = httpx.get(f"{base}/v1/screenings", headers={"X-API-Key": token})
    assert ok.status_code == 200
    store.revoke(key.id)
    again = httpx.get(f"{base}/v1/screenings", headers={"X-API-Key": token})
    assert again.status_code == 401 and error_of(again)["code"] == "unauthorized"
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert httpx.get(f"{base}/v1/screenings", headers={"X-API-Key": tampered}).status_code == 401


def test_a_key_without_the_scope_is_403(base: str, t: TestRuntime) -> None:
    reader = make_key(t, "screenings:read")
    response = httpx.post(f"{base}/v1/screenings", json=seed_request(), headers=reader)
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "forbidden" and "screenings:write" in error["message"]
    writer = make_key(t, "screenings:write")
    assert httpx.get(f"{base}/v1/screenings", headers=writer).status_code == 200  # write => read
    assert httpx.get(f"{base}/v1/webhooks", headers=writer).status_code == 403  # admin only
    assert httpx.get(f"{base}/v1/dnc", headers=writer).status_code == 403


def test_keys_are_stored_hashed(t: TestRuntime) -> None:
    _, token = ApiKeyStore(t.runtime.client, t.runtime.keys).create(["admin"])
    stored = t.runtime.client.hgetall(f"{t.runtime.keys.prefix}:apikeys")
    assert token not in str(stored) and "sha256:" in str(stored)


def test_auth_off_admits_direct_loopback_clients_only(
    t: TestRuntime, webhooks: WebhookService, redis_url: str
) -> None:
    app = create_app(t.runtime, webhooks=webhooks, auth=False, broker_url=redis_url)
    with serve(app) as base:
        assert httpx.get(f"{base}/v1/screenings").status_code == 200
        assert httpx.get(f"{base}/v1/webhooks").status_code == 200
        proxied = httpx.get(f"{base}/v1/screenings", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 401
        assert "DIALER_API_AUTH=off" in error_of(proxied)["message"]


# -- screenings ----------------------------------------------------------------------------------


def test_create_is_idempotent_and_conflicts_are_409(api: httpx.Client, t: TestRuntime) -> None:
    first = api.post("/v1/screenings", json=seed_request())
    assert first.status_code == 201, first.text
    assert first.headers["location"] == "/v1/screenings/abc-123"
    body = first.json()
    assert body["call_id"] == "abc-123" and body["created"] is True
    assert body["state"] == "scheduled" and body["status"] is None
    assert datetime.fromisoformat(body["dial_at"]) == WED_10
    again = api.post("/v1/screenings", json=seed_request())
    assert again.status_code == 200 and again.json()["created"] is False
    clash = api.post("/v1/screenings", json=seed_request(candidate_name="Someone Else"))
    assert clash.status_code == 409 and error_of(clash)["code"] == "conflict"


def test_invalid_requests_name_every_field_and_are_kept(api: httpx.Client, t: TestRuntime) -> None:
    bad = seed_request(phone="12", typo_field=1)
    del bad["job_title"]
    response = api.post("/v1/screenings", json=bad)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert {"job_title", "typo_field"} <= field_names(response)
    assert t.runtime.client.llen(t.runtime.keys.rejected) == 1  # nothing dropped silently
    phone = api.post("/v1/screenings", json=seed_request(phone="+3247"))
    assert phone.status_code == 422 and field_names(phone) == {"phone_number"}
    not_json = api.post(
        "/v1/screenings", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422 and field_names(not_json) == {"(body)"}
    not_object = api.post("/v1/screenings", json=[1, 2])
    assert not_object.status_code == 422


def test_retrieve_has_state_attempts_result_and_transcript(
    api: httpx.Client, t: TestRuntime
) -> None:
    api.post("/v1/screenings", json=seed_request()).raise_for_status()
    fresh = api.get("/v1/screenings/abc-123").json()
    assert fresh["state"] == "scheduled" and fresh["attempts"] == [] and fresh["result"] is None
    assert fresh["phone_number"] == "+32******456"
    assert fresh["transcript"] == []

    attempt = t.start_dialing("abc-123")
    turns = [
        TranscriptTurn(turn_number=1, role="agent", text="Hallo Mark"),
        TranscriptTurn(turn_number=2, role="candidate", text="Hallo"),
    ]
    data = CandidateData(
        call_id="abc-123", status=Status.COMPLETED, attempt=attempt, transcript=turns
    )
    t.runtime.consumer.consume(ResultMessage.from_agent(data, t.clock.now()), t.clock.now())

    done = api.get("/v1/screenings/abc-123").json()
    assert done["state"] == "done" and done["status"] == "completed"
    assert done["result"]["status"] == "completed"
    assert [a["outcome"] for a in done["attempts"]] == ["completed"]
    assert [turn["text"] for turn in done["transcript"]] == ["Hallo Mark", "Hallo"]
    assert "+32470123456" not in api.get("/v1/screenings/abc-123").text

    missing = api.get("/v1/screenings/nope")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"


def test_cancel(api: httpx.Client) -> None:
    api.post("/v1/screenings", json=seed_request()).raise_for_status()
    cancelled = api.post("/v1/screenings/abc-123/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "done" and cancelled.json()["status"] == "cancelled"
    assert api.post("/v1/screenings/abc-123/cancel").json()["status"] == "cancelled"
    assert api.post("/v1/screenings/nope/cancel").status_code == 404


def _submit_many(api: httpx.Client, t: TestRuntime, n: int, **extra: Any) -> list[str]:
    """n screenings, one second apart (the list's order is submission time)."""
    ids = []
    prefix = extra.get("campaign_id", "job")
    start = t.runtime.client.zcard(t.runtime.keys.jobs_index)
    for i in range(n):
        call_id = f"{prefix}-{start + i:03d}"
        response = api.post("/v1/screenings", json=seed_request(call_id=call_id, **extra))
        assert response.status_code == 201, response.text
        ids.append(call_id)
        t.clock.advance(1)
    return ids


def test_list_paginates_oldest_first(api: httpx.Client, t: TestRuntime) -> None:
    ids = []
    for i in range(25):
        ids += _submit_many(api, t, 1, campaign_id=f"c{i % 2}")
    page1 = api.get("/v1/screenings", params={"page": 1, "pageSize": 10}).json()
    assert page1["total"] == 25 and page1["page"] == 1 and page1["pageSize"] == 10
    assert len(page1["data"]) == 10
    page3 = api.get("/v1/screenings", params={"page": 3, "pageSize": 10}).json()
    assert len(page3["data"]) == 5
    listed = [s["call_id"] for p in (1, 2, 3) for s in api.get(
        "/v1/screenings", params={"page": p, "pageSize": 10}
    ).json()["data"]]  # fmt: skip
    assert listed == ids
    assert api.get("/v1/screenings", params={"page": 9}).json()["data"] == []
    default = api.get("/v1/screenings").json()
    assert default["pageSize"] == 20 and len(default["data"]) == 20
    item = default["data"][0]
    assert item["phone_number"] == "+32******456" and item["job_title"] == "Bakkerij Medewerker"


def test_page_size_over_100_and_bad_values_are_422(api: httpx.Client) -> None:
    too_big = api.get("/v1/screenings", params={"pageSize": 101})
    assert too_big.status_code == 422 and field_names(too_big) == {"pageSize"}
    assert field_names(api.get("/v1/screenings", params={"page": 0})) == {"page"}
    assert field_names(api.get("/v1/screenings", params={"page": "x"})) == {"page"}
    bad_status = api.get("/v1/screenings", params={"status": "INVITED"})
    assert bad_status.status_code == 422 and field_names(bad_status) == {"status"}
    assert api.get("/v1/screenings", params={"pageSize": 100}).status_code == 200


def test_filters_by_status_state_and_campaign(api: httpx.Client, t: TestRuntime) -> None:
    a = _submit_many(api, t, 3, campaign_id="spring")
    b = _submit_many(api, t, 2, campaign_id="autumn")
    api.post(f"/v1/screenings/{a[0]}/cancel").raise_for_status()
    api.post(f"/v1/screenings/{b[1]}/cancel").raise_for_status()

    def ids(**params: Any) -> tuple[list[str], int]:
        body = api.get("/v1/screenings", params=params).json()
        return [s["call_id"] for s in body["data"]], body["total"]

    assert ids(campaign_id="spring") == (a, 3)
    assert ids(campaignId="autumn") == (b, 2)  # the interviews API's spelling
    assert ids(status="cancelled") == ([a[0], b[1]], 2)
    assert ids(status="done") == ([a[0], b[1]], 2)  # a state works too
    assert ids(status="scheduled", campaign_id="spring") == (a[1:], 2)
    assert ids(status="cancelled", campaign_id="autumn", pageSize=1, page=1) == ([b[1]], 1)
    assert ids(status="completed") == ([], 0)
    assert ids(campaign_id="nobody") == ([], 0)
    clash = api.get("/v1/screenings", params={"campaign_id": "a", "campaignId": "b"})
    assert clash.status_code == 422
    keys = t.runtime.client.keys(f"{t.runtime.keys.prefix}:tmp:*")
    assert keys == []  # the filter's temporary keys are gone


def test_batch_json_reports_each_bad_row(api: httpx.Client) -> None:
    rows = [
        seed_request(call_id="b-1"),
        seed_request(call_id="b-2", phone="not a number"),
        "not an object",
        seed_request(call_id="b-1"),  # duplicate of row 1
    ]
    body = api.post("/v1/screenings/batch", json=rows).json()
    assert body["accepted"] == ["b-1"] and body["duplicates"] == ["b-1"]
    assert body["counts"] == {"total": 4, "accepted": 1, "duplicates": 1, "rejected": 2}
    by_row = {e["row"]: e for e in body["errors"]}
    assert set(by_row) == {2, 3}
    assert by_row[2]["call_id"] == "b-2"
    assert by_row[2]["fields"][0]["field"] == "phone_number"


def test_batch_envelope_with_a_template(api: httpx.Client) -> None:
    template = {k: v for k, v in seed_request().items() if k not in ("call_id", "phone_number")}
    envelope = {
        "template": template,
        "requests": [
            {"call_id": "e-1", "phone_number": "+32470123456", "candidate_name": "An"},
            {"call_id": "e-2", "phone_number": "+32470123457"},
        ],
    }
    body = api.post("/v1/screenings/batch", json=envelope).json()
    assert body["accepted"] == ["e-1", "e-2"], body
    assert api.get("/v1/screenings/e-1").json()["candidate_name"] == "An"
    bad = api.post("/v1/screenings/batch", json={"requests": "x", "extra": 1})
    assert bad.status_code == 422 and field_names(bad) == {"requests", "extra"}
    assert api.post("/v1/screenings/batch", json={"x": 1}).status_code == 422


def test_batch_csv_with_a_campaign_template_and_broken_rows(api: httpx.Client) -> None:
    template = {k: v for k, v in seed_request().items() if k not in ("call_id", "phone_number")}
    api.post("/v1/campaigns", json={"id": "bakery", "template": template}).raise_for_status()
    csv_text = (
        "id,name,phone\n"
        "c-1,Anna,+32470123456\n"
        "c-2,Bert,0470 12 34 57\n"  # national without region: rejected
        "c-3,Carl,+32470123458,extra cell\n"
        "c-4,Dora,+32470123459\n"
    )
    response = api.post(
        "/v1/screenings/batch",
        content=csv_text.encode(),
        params=[
            ("campaign_id", "bakery"),
            ("map", "id=call_id"),
            ("map", "name=candidate_name"),
            ("map", "phone=phone_number"),
        ],
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == ["c-1", "c-4"]
    lines = {e["row"]: e["fields"][0]["field"] for e in body["errors"]}
    assert lines == {3: "phone_number", 4: "(row)"}
    listed = api.get("/v1/screenings", params={"campaign_id": "bakery"}).json()
    assert listed["total"] == 2
    bad_map = api.post(
        "/v1/screenings/batch",
        content=b"a\n1\n",
        params={"map": "nonsense"},
        headers={"content-type": "text/csv"},
    )
    assert bad_map.status_code == 422 and field_names(bad_map) == {"map"}
    empty = api.post("/v1/screenings/batch", content=b"", headers={"content-type": "text/csv"})
    assert empty.status_code == 422


def test_batch_limits_and_media_types(api: httpx.Client) -> None:
    too_many = api.post("/v1/screenings/batch", json=[{}] * 5001)
    assert too_many.status_code == 413 and error_of(too_many)["code"] == "payload_too_large"
    xml = api.post("/v1/screenings/batch", content=b"<a/>", headers={"content-type": "text/xml"})
    assert xml.status_code == 415


# -- /api/calls/outbound (seeds/002) --------------------------------------------------------------


def test_seed_002_request_example(api: httpx.Client, t: TestRuntime) -> None:
    # The seed's own number is fictional: +1 555-123-0000 is no valid NANP number, and the
    # dialer never calls invalid numbers. The refusal names the seed's field.
    verbatim = api.post("/api/calls/outbound", json=SEED_002_BODY)
    assert verbatim.status_code == 422
    assert field_names(verbatim) == {"to"}
    assert "not a valid number" in error_of(verbatim)["message"]
    # The same example with a valid (New York) number gets the seed's response shape.
    response = api.post("/api/calls/outbound", json={**SEED_002_BODY, "to": "+12125550123"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"roomName", "participant", "metadata"} <= set(body)
    call_id = body["callId"]
    assert body["roomName"] == room_name(call_id, 1)
    assert body["participant"]["participantIdentity"] == "phone_user"
    assert body["participant"]["roomName"] == body["roomName"]
    assert body["metadata"] == {
        "questions": SEED_002_QUESTIONS,
        "question": SEED_002_QUESTIONS[0],
        "phone_number": "+12125550123",
        "recipient_name": "Jane Doe",
        "row_index": 12,
    }
    job = t.store.get(call_id)
    assert job.request.candidate_name == "Jane Doe"
    assert [q.text for q in job.request.open_questions] == SEED_002_QUESTIONS
    assert [q.id for q in job.request.open_questions] == ["q1", "q2", "q3"]
    assert job.request.job_title == "Outbound call"
    assert job.request.metadata["row_index"] == 12
    assert "+12125550123" not in str(job.request.metadata)  # metadata reaches webhooks
    screening = api.get(f"/v1/screenings/{call_id}").json()
    assert screening["state"] == "scheduled"  # 04:00 in New York: waits for the window
    assert body["dialAt"] == "2026-03-04T14:00:00Z"


def test_outbound_room_name_makes_it_idempotent_and_errors_use_seed_names(
    api: httpx.Client,
) -> None:
    # Due now (Wednesday 10:00 in Brussels) but not waited for: no worker runs here.
    body = {
        "to": "+32470123456",
        "roomName": "crm-row-7",
        "questions": ["Why us?"],
        "waitUntilAnswered": False,
    }
    first = api.post("/api/calls/outbound", json=body).json()
    again = api.post("/api/calls/outbound", json=body).json()
    assert first["callId"] == again["callId"] == "crm-row-7"
    assert first["participant"]["state"] == "scheduled"
    national = api.post("/api/calls/outbound", json={"to": "0470123456"})
    assert national.status_code == 422 and field_names(national) == {"to"}
    invalid = api.post("/api/calls/outbound", json={"to": "+3247012"})
    assert invalid.status_code == 422 and field_names(invalid) == {"to"}
    unknown = api.post("/api/calls/outbound", json={"to": "+32470123456", "nope": 1})
    assert unknown.status_code == 422 and field_names(unknown) == {"nope"}
    assert field_names(api.post("/api/calls/outbound", json={})) == {"to"}


def test_outbound_to_a_do_not_call_number_is_not_scheduled(api: httpx.Client) -> None:
    api.post("/v1/dnc", json={"numbers": ["+32470999888"]}).raise_for_status()
    body = api.post("/api/calls/outbound", json={"to": "+32470999888"}).json()
    assert body["participant"]["state"] == "done" and body["status"] == "do_not_call"


# -- campaigns -----------------------------------------------------------------------------------


def test_campaign_routes(api: httpx.Client, t: TestRuntime) -> None:
    policy = {
        "calls_per_second": 2,
        "max_concurrent_calls": 5,
        "calling_window": {"sat": [], "mon": [{"start": "10:00", "end": "12:00"}]},
        "retry_policy": {"busy": [600]},
    }
    created = api.post("/v1/campaigns", json={"id": "spring", "name": "Spring", "policy": policy})
    assert created.status_code == 201, created.text
    assert created.json()["policy"]["calls_per_second"] == 2
    assert api.post(
        "/v1/campaigns", json={"id": "spring", "name": "Spring", "policy": policy}
    ).status_code == 200  # fmt: skip
    assert api.post("/v1/campaigns", json={"id": "spring"}).status_code == 409
    bad = api.post("/v1/campaigns", json={"id": "x y", "policy": {"calls_per_second": -1}})
    assert bad.status_code == 422 and {"id", "policy.calls_per_second"} <= field_names(bad)

    first, *_ = _submit_many(api, t, 3, campaign_id="spring")
    api.post(f"/v1/screenings/{first}/cancel").raise_for_status()
    paused = api.post("/v1/campaigns/spring/pause", json={"reason": "client asked"}).json()
    assert paused["paused"] is True and paused["pause_reason"] == "client asked"
    progress = api.get("/v1/campaigns/spring/progress").json()
    assert progress["paused"] is True and progress["total"] == 3 and progress["done"] == 1
    assert progress["by_status"] == {"cancelled": 1}
    assert progress["by_state"]["scheduled"] == 2
    assert api.post("/v1/campaigns/spring/resume").json()["paused"] is False
    assert api.post("/v1/campaigns/spring/pause").json()["paused"] is True  # body optional

    listed = api.get("/v1/campaigns").json()
    assert [c["id"] for c in listed] == ["spring"]
    assert api.get("/v1/campaigns/spring").json()["name"] == "Spring"
    updated = api.put("/v1/campaigns/spring/policy", json={"policy": {"calls_per_second": 9}})
    assert updated.json()["policy"]["calls_per_second"] == 9
    assert updated.json()["policy"]["calling_window"] is None
    for path in ("/v1/campaigns/nope", "/v1/campaigns/nope/progress"):
        assert api.get(path).status_code == 404
    assert api.post("/v1/campaigns/nope/pause").status_code == 404


# -- webhooks ------------------------------------------------------------------------------------


def test_webhook_routes(api: httpx.Client, tmp_path: Path) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret, out_dir=tmp_path / "rx") as rx:
        added = api.post(
            "/v1/webhooks",
            json={"url": rx.url("/crm"), "events": ["screening.completed"], "secret": secret},
        )
        assert added.status_code == 201, added.text
        endpoint = added.json()["endpoint"]
        assert added.json()["secret"] == secret
        assert endpoint["secret"].startswith("whsec_…") and secret not in str(endpoint)
        ep = endpoint["id"]
        assert [e["id"] for e in api.get("/v1/webhooks").json()] == [ep]
        assert api.get(f"/v1/webhooks/{ep}").json()["url"] == rx.url("/crm")

        tested = api.post(f"/v1/webhooks/{ep}/test").json()
        assert tested["delivered"] is True and tested["status_code"] == 200, tested
        received = rx.accepted("/crm")
        assert len(received) == 1 and received[0].json()["type"] == "webhook.test"
        Webhook(secret).verify(received[0].body, received[0].headers)

        disabled = api.post(f"/v1/webhooks/{ep}/disable", json={"reason": "maintenance"})
        assert disabled.json()["enabled"] is False
        assert disabled.json()["disabled_reason"] == "maintenance"
        assert api.post(f"/v1/webhooks/{ep}/enable").json()["enabled"] is True

    assert api.get("/v1/webhooks/dead").json() == []
    assert api.post("/v1/webhooks/replay", json={}).status_code == 422
    assert api.post("/v1/webhooks/replay", json={"endpoint_id": ep}).json() == {"replayed": []}
    assert (
        api.post("/v1/webhooks/replay", json={"delivery_id": "dlv_" + "0" * 24}).status_code == 404
    )
    assert api.delete(f"/v1/webhooks/{ep}").status_code == 204
    assert api.delete(f"/v1/webhooks/{ep}").status_code == 404
    assert api.get(f"/v1/webhooks/{ep}").status_code == 404
    assert api.post(f"/v1/webhooks/{ep}/test").status_code == 404
    bad = api.post("/v1/webhooks", json={"url": "ftp://x", "events": ["nope"]})
    assert bad.status_code == 422 and field_names(bad) == {"events"}
    bad_url = api.post("/v1/webhooks", json={"url": "ftp://example.com/x"})
    assert bad_url.status_code == 422 and field_names(bad_url) == {"url"}


def test_a_dead_delivery_is_listed_and_replayed_with_the_same_webhook_id(
    api: httpx.Client, webhooks: WebhookService, t: TestRuntime, tmp_path: Path
) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret, out_dir=tmp_path / "rx") as rx:
        added = api.post("/v1/webhooks", json={"url": rx.url("/crm"), "secret": secret})
        ep = added.json()["endpoint"]["id"]
        rx.script("/crm", Reply(410))  # "gone": dead at once, and the endpoint is disabled
        now = t.clock.now()
        (delivery_id,) = webhooks.emit("screening.completed", {"call_id": "dead-1"}, now)
        assert webhooks.deliver(delivery_id, now).result == "dead"

        (dead,) = api.get("/v1/webhooks/dead").json()
        assert dead["id"] == delivery_id and dead["endpoint_id"] == ep
        assert dead["status"] == "dead" and dead["last_status_code"] == 410
        assert api.get("/v1/webhooks/dead", params={"endpoint_id": "ep_other"}).json() == []
        refused = api.post("/v1/webhooks/replay", json={"delivery_id": delivery_id})
        assert refused.status_code == 409 and "enable" in error_of(refused)["message"]
        api.post(f"/v1/webhooks/{ep}/enable").raise_for_status()
        replayed = api.post("/v1/webhooks/replay", json={"endpoint_id": ep})
        assert replayed.json() == {"replayed": [delivery_id]}
        assert api.get("/v1/webhooks/dead").json() == []

        # What the beat does within a second: send it again, same message.
        assert webhooks.deliver(delivery_id, t.clock.now()).result == "delivered"
        first, again = rx.received("/crm")
        assert first.status == 410 and again.accepted
        assert again.webhook_id == first.webhook_id == dead["message_id"]
        assert again.json()["data"] == {"call_id": "dead-1"}


# -- do-not-call ---------------------------------------------------------------------------------


def test_dnc_routes(api: httpx.Client) -> None:
    added = api.post("/v1/dnc", json={"numbers": ["+32470123456", "0470 12 34 57"], "region": "BE"})
    assert added.json() == {"changed": 2, "numbers": ["+32******456", "+32******457"]}
    assert api.get("/v1/dnc").json() == {"size": 2}
    listed = api.post("/v1/dnc/lookup", json={"number": "+32470123456"}).json()
    assert listed == {"number": "+32******456", "listed": True}
    # A number on the list is never scheduled.
    submitted = api.post("/v1/screenings", json=seed_request()).json()
    assert submitted["state"] == "done" and submitted["status"] == "do_not_call"
    removed = api.post("/v1/dnc/remove", json={"numbers": ["+32470123457"]}).json()
    assert removed["changed"] == 1
    bad = api.post("/v1/dnc", json={"numbers": ["+32470123458", "12"]})
    assert bad.status_code == 422 and field_names(bad) == {"numbers.1"}
    imported = api.post(
        "/v1/dnc/import",
        content=b"phone_number\n+32470123460\nnonsense\n+32470123456\n",
        headers={"content-type": "text/csv"},
    ).json()
    assert imported["added"] == 1 and imported["already_present"] == 1
    assert [r["line"] for r in imported["rejected"]] == [3]
    wrong_column = api.post(
        "/v1/dnc/import", content=b"tel\n+32470123461\n", headers={"content-type": "text/csv"}
    )
    assert wrong_column.status_code == 422 and "--column" in error_of(wrong_column)["message"]
    json_body = api.post("/v1/dnc/import", json={"a": 1})
    assert json_body.status_code == 415


# -- operations ----------------------------------------------------------------------------------


def test_healthz(base: str) -> None:
    response = httpx.get(f"{base}/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["redis"]["ok"] and body["checks"]["broker"]["ok"]


def test_healthz_says_what_is_unreachable(t: TestRuntime, webhooks: WebhookService) -> None:
    dead = f"redis://127.0.0.1:{_closed_port()}/0"
    app = create_app(t.runtime, webhooks=webhooks, auth=True, broker_url=dead)
    with serve(app) as base:
        response = httpx.get(f"{base}/healthz", timeout=20)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is True and body["checks"]["broker"]["ok"] is False


def test_redis_down_is_503_with_a_hint(t: TestRuntime, webhooks: WebhookService) -> None:
    dead = f"redis://127.0.0.1:{_closed_port()}/0"
    runtime = Runtime.for_url(dead, Settings(redis_url=dead))
    app = create_app(runtime, webhooks=webhooks, auth=False, broker_url=dead)
    with serve(app) as base:
        response = httpx.get(f"{base}/v1/screenings", timeout=20)
        assert response.status_code == 503
        assert "REDIS_URL" in error_of(response)["message"]
        scraped = httpx.get(f"{base}/metrics", timeout=20)
        assert scraped.status_code == 200 and "dialer_redis_up 0.0" in scraped.text
        assert httpx.get(f"{base}/healthz", timeout=20).status_code == 503


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics(api: httpx.Client, base: str, t: TestRuntime) -> None:
    _submit_many(api, t, 2)
    t.runtime.client.rpush("dial", "m1", "m2")
    metrics.record_dial("busy", 1.5, client=t.runtime.client, keys=t.runtime.keys)
    metrics.record_dial("answered", 7, client=t.runtime.client, keys=t.runtime.keys)
    metrics.record_dial("Weird Outcome!", 500, client=t.runtime.client, keys=t.runtime.keys)
    metrics.record_webhook("delivered", client=t.runtime.client, keys=t.runtime.keys)
    response = httpx.get(f"{base}/metrics")  # no key needed
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        "dialer_redis_up 1.0",
        'dialer_jobs{state="scheduled"} 2.0',
        'dialer_queue_depth{queue="dial"} 2.0',
        'dialer_queue_depth{queue="intake"} 0.0',
        'dialer_due_set_size{set="jobs"} 2.0',
        'dialer_dials_total{outcome="busy"} 1.0',
        'dialer_dials_total{outcome="other"} 1.0',
        'dialer_dial_latency_seconds_bucket{le="2.0"} 1.0',
        'dialer_dial_latency_seconds_bucket{le="10.0"} 2.0',
        'dialer_dial_latency_seconds_bucket{le="+Inf"} 3.0',
        "dialer_dial_latency_seconds_count 3.0",
        "dialer_dial_latency_seconds_sum 508.5",
        "dialer_calls_in_progress 0.0",
        'dialer_webhook_deliveries_total{result="delivered"} 0.0',
        "dialer_webhook_failures_total 0.0",
        'dialer_webhook_task_results_total{result="delivered"} 1.0',
    ):
        assert line in text, line


# -- the rest ------------------------------------------------------------------------------------


def test_unknown_routes_and_docs(base: str) -> None:
    missing = httpx.get(f"{base}/v2/nothing")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = httpx.delete(f"{base}/healthz")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"
    assert httpx.get(f"{base}/docs").status_code == 200
    spec = httpx.get(f"{base}/openapi.json").json()
    assert "ScreeningRequest" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


# (method, path) of every route the tests above call; kept in step with the app.
COVERED = {
    ("POST", "/v1/screenings"),
    ("GET", "/v1/screenings"),
    ("POST", "/v1/screenings/batch"),
    ("GET", "/v1/screenings/{call_id}"),
    ("POST", "/v1/screenings/{call_id}/cancel"),
    ("POST", "/api/calls/outbound"),
    ("POST", "/v1/campaigns"),
    ("GET", "/v1/campaigns"),
    ("GET", "/v1/campaigns/{campaign_id}"),
    ("PUT", "/v1/campaigns/{campaign_id}/policy"),
    ("POST", "/v1/campaigns/{campaign_id}/pause"),
    ("POST", "/v1/campaigns/{campaign_id}/resume"),
    ("GET", "/v1/campaigns/{campaign_id}/progress"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/dead"),
    ("POST", "/v1/webhooks/replay"),
    ("GET", "/v1/webhooks/{endpoint_id}"),
    ("DELETE", "/v1/webhooks/{endpoint_id}"),
    ("POST", "/v1/webhooks/{endpoint_id}/enable"),
    ("POST", "/v1/webhooks/{endpoint_id}/disable"),
    ("POST", "/v1/webhooks/{endpoint_id}/test"),
    ("GET", "/v1/dnc"),
    ("POST", "/v1/dnc"),
    ("POST", "/v1/dnc/remove"),
    ("POST", "/v1/dnc/lookup"),
    ("POST", "/v1/dnc/import"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
}


def test_every_route_is_covered(t: TestRuntime, webhooks: WebhookService) -> None:
    app = create_app(t.runtime, webhooks=webhooks)
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert routes == COVERED
