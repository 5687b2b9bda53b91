"""`/v1/screenings`: create, batch, list (paginated, filtered), retrieve, cancel."""

from __future__ import annotations

import csv
import json
import secrets
import tempfile
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from dialer.campaigns import CampaignNotFound
from dialer.errors import FieldProblem, JobConflict, ValidationFailed
from dialer.http.auth import READ, WRITE
from dialer.http.errors import ApiError, error_responses
from dialer.http.schemas import (
    BatchCounts,
    BatchResult,
    BatchRowError,
    FieldErrorOut,
    ScreeningDetail,
    ScreeningPage,
    ScreeningSubmitted,
    ScreeningSummary,
)
from dialer.http.state import Services, services
from dialer.models import JobState, Status
from dialer.phone import mask
from dialer.store import Job

router = APIRouter(prefix="/v1/screenings", tags=["screenings"])

MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_BATCH_ROWS = 5000
MAX_PAGE_SIZE = 100


class StatusFilter(StrEnum):
    """A job state (queued ... done) or a final status (completed ... expired)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    DIALING = "dialing"
    IN_CALL = "in_call"
    RETRY_SCHEDULED = "retry_scheduled"
    DONE = "done"
    COMPLETED = "completed"
    VOICEMAIL = "voicemail"
    NOT_INTERESTED = "not_interested"
    KNOCKOUT_FAILED = "knockout_failed"
    ESCALATED = "escalated"
    UNCLEAR = "unclear"
    IRRELEVANT = "irrelevant"
    INCOMPLETE = "incomplete"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    DECLINED = "declined"
    FAILED = "failed"
    DO_NOT_CALL = "do_not_call"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


_FINAL_STATUSES = frozenset(s.value for s in Status)


def summary(job: Job) -> ScreeningSummary:
    return ScreeningSummary(
        call_id=job.call_id,
        state=job.state,
        status=job.final_status,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        campaign_id=job.campaign_id,
        candidate_name=job.request.candidate_name,
        job_title=job.request.job_title,
        phone_number=mask(job.phone_e164),
        created_at=job.created_at,
        updated_at=job.updated_at,
        next_at=job.next_at if job.state is not JobState.DONE else None,
        detail=job.detail,
    )


def detail(svc: Services, call_id: str) -> ScreeningDetail:
    store = svc.runtime.store
    job = store.get(call_id)
    latest = job.final_result or job.last_result
    return ScreeningDetail(
        **summary(job).model_dump(),
        cancel_requested=job.cancel_requested,
        attempts=store.attempts(call_id),
        result=job.final_result,
        last_result=job.last_result,
        transcript=list(latest.transcript) if latest is not None else [],
    )


# -- create ------------------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ApiError(
            422,
            "validation_failed",
            "the body is not valid JSON",
            [FieldProblem("(body)", "not valid JSON")],
        ) from None


def _submit(svc: Services, payload: Any, response: Response) -> ScreeningSubmitted:
    rt = svc.runtime
    result = rt.intake.submit(payload, rt.clock.now(), source="http")
    response.status_code = 201 if result.created else 200
    if result.created:
        response.headers["Location"] = f"/v1/screenings/{result.call_id}"
    return ScreeningSubmitted(
        call_id=result.call_id,
        created=result.created,
        state=result.state,
        status=result.final_status,
        dial_at=result.dial_at,
    )


@router.post(
    "",
    status_code=201,
    response_model=ScreeningSubmitted,
    summary="Submit one screening",
    description=(
        "Body: a ScreeningRequest (the seed's SessionInput plus `phone_number`, ...). 201 with "
        "the new job; 200 when the same request was already submitted (idempotent by "
        "`call_id`); 409 when the `call_id` exists with a different payload; 422 names every "
        "invalid field. Calling hours, the do-not-call list and pacing apply."
    ),
    responses=error_responses(
        401,
        403,
        409,
        413,
        422,
        503,
        also={200: {"model": ScreeningSubmitted, "description": "Already submitted"}},
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ScreeningRequest"}}
            },
        }
    },
    dependencies=[WRITE],
)
async def create_screening(request: Request, response: Response) -> ScreeningSubmitted:
    payload = await _json_body(request)
    return await run_in_threadpool(_submit, services(request), payload, response)


# -- batch -------------------------------------------------------------------------------------


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _campaign_template(svc: Services, campaign_id: str | None) -> dict[str, Any]:
    if not campaign_id:
        return {}
    try:
        template = svc.campaigns.get(campaign_id).template
    except CampaignNotFound:
        template = {}
    return {**template, "campaign_id": campaign_id}


def _submit_rows(
    svc: Services, rows: list[tuple[int, Any, str | None]], source: str
) -> BatchResult:
    """rows: (row number, payload or None, error for an unreadable row)."""
    rt = svc.runtime
    accepted: list[str] = []
    duplicates: list[str] = []
    errors: list[BatchRowError] = []
    for number, payload, unreadable in rows:
        call_id = payload.get("call_id") if isinstance(payload, Mapping) else None
        call_id = str(call_id) if call_id is not None else None
        if unreadable is not None:
            errors.append(
                BatchRowError(
                    row=number,
                    call_id=None,
                    fields=[FieldErrorOut(field="(row)", message=unreadable)],
                )
            )
            continue
        try:
            result = rt.intake.submit(payload, rt.clock.now(), source=f"{source}:{number}")
        except ValidationFailed as exc:
            errors.append(
                BatchRowError(
                    row=number,
                    call_id=call_id,
                    fields=[FieldErrorOut(field=p.field, message=p.message) for p in exc.problems],
                )
            )
            continue
        except JobConflict as exc:
            errors.append(
                BatchRowError(
                    row=number,
                    call_id=call_id,
                    fields=[FieldErrorOut(field="call_id", message=str(exc))],
                )
            )
            continue
        (accepted if result.created else duplicates).append(result.call_id)
    return BatchResult(
        accepted=accepted,
        duplicates=duplicates,
        errors=errors,
        counts=BatchCounts(
            total=len(rows),
            accepted=len(accepted),
            duplicates=len(duplicates),
            rejected=len(errors),
        ),
    )


def _too_many(count: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"{count} rows: at most {MAX_BATCH_ROWS} per batch; split the file (or use "
        "`dialer enqueue FILE.csv`, which has no limit)",
    )


def _json_rows(body: Any, base: dict[str, Any]) -> list[tuple[int, Any, str | None]]:
    if isinstance(body, list):
        template, items = {}, body
    elif isinstance(body, dict) and "requests" in body:
        unknown = sorted(set(body) - {"template", "requests"})
        template = body.get("template", {})
        items = body["requests"]
        problems = [FieldProblem(k, "unknown field (template, requests)") for k in unknown]
        if not isinstance(template, dict):
            problems.append(FieldProblem("template", "must be a JSON object"))
        if not isinstance(items, list):
            problems.append(FieldProblem("requests", "must be a list of screening requests"))
        if problems:
            raise ValidationFailed(problems)
    else:
        raise ValidationFailed(
            [
                FieldProblem(
                    "(body)",
                    'must be a JSON list of screening requests, or {"template": {...}, '
                    '"requests": [...]}',
                )
            ]
        )
    if len(items) > MAX_BATCH_ROWS:
        raise _too_many(len(items))
    merged_base = _merge(base, template)
    return [
        (i, _merge(merged_base, item) if isinstance(item, Mapping) else item, None)
        for i, item in enumerate(items, start=1)
    ]


def _csv_rows(
    raw: bytes, base: dict[str, Any], column_map: dict[str, str]
) -> list[tuple[int, Any, str | None]]:
    from dialer.csv_import import count_rows, read_rows

    with tempfile.TemporaryDirectory(prefix="dialer-batch-") as tmp:
        path = Path(tmp) / "batch.csv"
        path.write_bytes(raw)
        try:
            total = count_rows(path)
            if total > MAX_BATCH_ROWS:
                raise _too_many(total)
            return [
                (row.line, row.payload, row.error)
                for row in read_rows(path, template=base, column_map=column_map)
            ]
        except (ValueError, csv.Error, UnicodeDecodeError) as exc:
            message = str(exc).replace(str(path), "CSV")
            raise ValidationFailed([FieldProblem("(body)", f"unreadable CSV: {message}")]) from None


@router.post(
    "/batch",
    response_model=BatchResult,
    summary="Submit many screenings (JSON or CSV)",
    description=(
        '`application/json`: a list of ScreeningRequests, or `{"template": {...}, '
        '"requests": [...]}` (the template is merged under each request). `text/csv`: one '
        "candidate per row, columns named like request fields (dotted for nested ones, JSON "
        "cells for lists), `map=CSVCOL=field` to rename. With `campaign_id`, every row joins "
        "that campaign and the campaign's template is merged under it. At most "
        f"{MAX_BATCH_ROWS} rows. Bad rows are reported in `errors` (by 1-based position or "
        "CSV line), never fatal."
    ),
    responses=error_responses(401, 403, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/ScreeningRequest"},
                                "maxItems": MAX_BATCH_ROWS,
                            },
                            {"$ref": "#/components/schemas/BatchEnvelope"},
                        ]
                    }
                },
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
    dependencies=[WRITE],
)
async def batch(
    request: Request,
    campaign_id: Annotated[
        str | None, Query(max_length=128, description="Every row joins this campaign")
    ] = None,
    map_: Annotated[
        list[str] | None,
        Query(alias="map", description="CSV only: rename a column, CSVCOL=field (repeatable)"),
    ] = None,
) -> BatchResult:
    svc = services(request)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
    base = await run_in_threadpool(_campaign_template, svc, campaign_id)
    if content_type in ("text/csv", "application/csv"):
        mapping = {}
        for item in map_ or []:
            column, sep, field = item.partition("=")
            if not sep or not column or not field:
                raise ValidationFailed([FieldProblem("map", f"{item!r}: use CSVCOL=field")])
            mapping[column] = field
        rows = await run_in_threadpool(_csv_rows, raw, base, mapping)
        source = "http-batch-csv"
    elif content_type in ("application/json", "") or content_type.endswith("+json"):
        body = await _json_body(request)
        rows = _json_rows(body, base)
        source = "http-batch"
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {content_type!r}: send application/json or text/csv",
        )
    return await run_in_threadpool(_submit_rows, svc, rows, source)


# -- list / retrieve / cancel --------------------------------------------------------------------


def _page_ids(
    svc: Services, status: str | None, campaign_id: str | None, offset: int, size: int
) -> tuple[list[str], int]:
    rt = svc.runtime
    base = rt.keys.campaign_jobs(campaign_id) if campaign_id else rt.keys.jobs_index
    if status is None:
        pipe = rt.client.pipeline(transaction=False)
        pipe.zcard(base)
        pipe.zrange(base, offset, offset + size - 1)
        total, ids = pipe.execute()
        return [str(i) for i in ids], int(total)
    members = (
        rt.store.status_index(status) if status in _FINAL_STATUSES else rt.store.state_index(status)
    )
    # Intersect (ordered by submission time: the index's score, weight 0 for the plain set) into
    # a temporary key, read the page, drop the key: one MULTI, nothing left behind.
    tmp = f"{rt.keys.prefix}:tmp:list:{secrets.token_hex(8)}"
    pipe = rt.client.pipeline(transaction=True)
    pipe.zinterstore(tmp, {base: 1, members: 0})
    pipe.zrange(tmp, offset, offset + size - 1)
    pipe.delete(tmp)
    total, ids, _ = pipe.execute()
    return [str(i) for i in ids], int(total)


def _list(
    svc: Services, status: str | None, campaign_id: str | None, page: int, size: int
) -> ScreeningPage:
    ids, total = _page_ids(svc, status, campaign_id, (page - 1) * size, size)
    rt = svc.runtime
    pipe = rt.client.pipeline(transaction=False)
    for call_id in ids:
        pipe.hgetall(rt.keys.job(call_id))
    jobs = [Job.from_hash(h) for h in pipe.execute() if h]
    return ScreeningPage(data=[summary(job) for job in jobs], page=page, pageSize=size, total=total)


@router.get(
    "",
    response_model=ScreeningPage,
    summary="List screenings",
    description=(
        "Paginated, oldest first (submission order, so pages stay put while jobs are added). "
        "`status` accepts a job state (queued, scheduled, dialing, in_call, retry_scheduled, "
        "done) or a final status (completed, voicemail, ..., cancelled, expired). "
        "`campaign_id` (or `campaignId`, as in the interviews API) limits to one campaign."
    ),
    responses=error_responses(401, 403, 422, 503),
    dependencies=[READ],
)
def list_screenings(
    request: Request,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based")] = 1,
    page_size: Annotated[
        int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE, description="At most 100")
    ] = 20,
    status: Annotated[StatusFilter | None, Query(description="State or final status")] = None,
    campaign_id: Annotated[str | None, Query(max_length=128)] = None,
    campaignId: Annotated[
        str | None, Query(max_length=128, description="Alias of campaign_id")
    ] = None,
) -> ScreeningPage:
    if campaign_id and campaignId and campaign_id != campaignId:
        raise ValidationFailed(
            [FieldProblem("campaignId", "differs from campaign_id; give one of them")]
        )
    campaign = campaign_id or campaignId
    return _list(services(request), status.value if status else None, campaign, page, page_size)


@router.get(
    "/{call_id}",
    response_model=ScreeningDetail,
    summary="Retrieve one screening",
    description="State, attempts, the result (CandidateData) and the transcript.",
    responses=error_responses(401, 403, 404, 503),
    dependencies=[READ],
)
def get_screening(request: Request, call_id: str) -> ScreeningDetail:
    return detail(services(request), call_id)


@router.post(
    "/{call_id}/cancel",
    response_model=ScreeningDetail,
    summary="Cancel a screening",
    description=(
        "Not dialing yet: final status `cancelled` at once. Dialing or in a call: the call "
        "finishes and no retry follows. Already done: unchanged (idempotent)."
    ),
    responses=error_responses(401, 403, 404, 503),
    dependencies=[WRITE],
)
def cancel_screening(request: Request, call_id: str) -> ScreeningDetail:
    svc = services(request)
    svc.dialer.cancel(call_id)
    return detail(svc, call_id)
