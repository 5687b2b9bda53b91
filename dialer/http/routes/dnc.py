"""`/v1/dnc`: the do-not-call list (admin scope). Numbers travel in bodies, never in URLs, so
they stay out of access logs; responses show them masked."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from dialer.dnc import ImportReport
from dialer.errors import FieldProblem, ValidationFailed
from dialer.http.auth import ADMIN
from dialer.http.errors import ApiError, error_responses
from dialer.http.schemas import (
    DncChanged,
    DncImported,
    DncImportRejected,
    DncListed,
    DncLookup,
    DncNumbers,
    DncSize,
)
from dialer.http.state import services
from dialer.phone import InvalidPhoneNumber, mask, normalize

router = APIRouter(prefix="/v1/dnc", tags=["do-not-call"], dependencies=[ADMIN])

MAX_IMPORT_BYTES = 20 * 1024 * 1024


def _normalise_all(numbers: list[str], region: str | None) -> list[str]:
    problems: list[FieldProblem] = []
    e164s: list[str] = []
    for i, number in enumerate(numbers):
        try:
            e164s.append(normalize(number, region).e164)
        except InvalidPhoneNumber as exc:
            problems.append(FieldProblem(f"numbers.{i}", str(exc)))
    if problems:
        raise ValidationFailed(problems)
    return e164s


@router.get(
    "", response_model=DncSize, summary="Size of the list", responses=error_responses(401, 403, 503)
)
def size(request: Request) -> DncSize:
    return DncSize(size=services(request).runtime.dnc.size())


@router.post(
    "",
    response_model=DncChanged,
    summary="Add numbers",
    description=(
        "E.164, or national with `region`. Checked at intake and again right before each dial. "
        "All or nothing: one invalid number rejects the request (422 names it)."
    ),
    responses=error_responses(401, 403, 422, 503),
)
def add(body: DncNumbers, request: Request) -> DncChanged:
    e164s = _normalise_all(body.numbers, body.region)
    added = services(request).runtime.dnc.add(e164s)
    return DncChanged(changed=added, numbers=[mask(n) for n in e164s])


@router.post(
    "/remove",
    response_model=DncChanged,
    summary="Remove numbers",
    responses=error_responses(401, 403, 422, 503),
)
def remove(body: DncNumbers, request: Request) -> DncChanged:
    e164s = _normalise_all(body.numbers, body.region)
    dnc = services(request).runtime.dnc
    removed = sum(1 for n in e164s if dnc.remove(n))
    return DncChanged(changed=removed, numbers=[mask(n) for n in e164s])


@router.post(
    "/lookup",
    response_model=DncListed,
    summary="Is a number on the list?",
    responses=error_responses(401, 403, 422, 503),
)
def lookup(body: DncLookup, request: Request) -> DncListed:
    (e164,) = _normalise_all([body.number], body.region)
    return DncListed(number=mask(e164), listed=services(request).runtime.dnc.contains(e164))


def _import(raw: bytes, request: Request, column: str, region: str | None) -> ImportReport:
    with tempfile.TemporaryDirectory(prefix="dialer-dnc-") as tmp:
        path = Path(tmp) / "dnc.csv"
        path.write_bytes(raw)
        try:
            return services(request).runtime.dnc.import_csv(path, column=column, region=region)
        except (ValueError, csv.Error, UnicodeDecodeError) as exc:
            message = str(exc).replace(str(path), "CSV")
            raise ValidationFailed([FieldProblem("(body)", f"unreadable CSV: {message}")]) from None


@router.post(
    "/import",
    response_model=DncImported,
    summary="Import a CSV suppression list",
    description="Body: CSV with a header row (`text/csv`); bad rows are listed, not fatal.",
    responses=error_responses(401, 403, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_csv(
    request: Request,
    column: Annotated[str, Query(min_length=1, max_length=100)] = "phone_number",
    region: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
) -> DncImported:
    content_type = request.headers.get("content-type", "text/csv").split(";")[0].strip()
    if content_type not in ("text/csv", "application/csv", "text/plain"):
        raise ApiError(415, "unsupported_media_type", "send the list as text/csv")
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise ApiError(413, "payload_too_large", f"over {MAX_IMPORT_BYTES} bytes; split the file")
    report = await run_in_threadpool(_import, raw, request, column, region)
    return DncImported(
        added=report.added,
        already_present=report.already_present,
        rejected=[
            DncImportRejected(line=line, reason=reason) for line, _v, reason in report.rejected
        ],
    )
