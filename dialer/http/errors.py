"""Error bodies: every failure answers `{"error": {"code", "message", "fields": [...]}}`.

401 unauthorized       no key, unknown key, revoked key
403 forbidden          the key lacks the route's scope
404 not_found          no such screening / campaign / webhook endpoint / delivery / route
405 method_not_allowed
409 conflict           call_id re-used with a different payload, campaign exists, ...
413 payload_too_large  a batch over the row limit
415 unsupported_media_type
422 validation_failed  `fields` names each field and what is wrong with it
503 unavailable        Redis (or the broker) cannot be reached
500 internal_error     a bug: logged with its traceback, nothing internal in the body
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dialer.apikeys import ApiKeyNotFound
from dialer.campaigns import CampaignConflict, CampaignNotFound
from dialer.errors import (
    ConfigError,
    FieldProblem,
    JobConflict,
    JobNotFound,
    UnsafeWebhookURL,
    ValidationFailed,
    WebhookError,
)
from dialer.http.schemas import ErrorBody
from dialer.phone import InvalidPhoneNumber
from dialer.webhooks import DeliveryNotFound, EndpointNotFound

log = logging.getLogger("dialer.http")


class ApiError(Exception):
    """Raised by routes and dependencies; rendered as the standard error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[FieldProblem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    fields: Iterable[FieldProblem] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "fields": [{"field": p.field, "message": p.message} for p in fields],
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def error_responses(
    *statuses: int, also: dict[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can answer (plus `also`)."""
    text = {
        400: "Bad request",
        401: "Missing, unknown or revoked API key",
        403: "The API key lacks the required scope",
        404: "Not found",
        409: "Conflict",
        413: "Too many rows",
        415: "Unsupported content type",
        422: "Invalid input; `fields` names each problem",
        503: "Redis or the broker is unreachable",
    }
    found: dict[int | str, dict[str, Any]] = dict(also or {})
    for status in statuses:
        found[status] = {"model": ErrorBody, "description": text.get(status, "Error")}
    return found


_QUERY_NAMES = {"missing": "required field is missing"}


def _problems(exc: RequestValidationError) -> list[FieldProblem]:
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        name = ".".join(loc) or "(body)"
        kind = err.get("type", "")
        message = str(err.get("msg", "invalid"))
        if kind == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif kind in _QUERY_NAMES:
            message = _QUERY_NAMES[kind]
        elif kind == "json_invalid":
            name, message = "(body)", "not valid JSON"
        problems.append(FieldProblem(name, message))
    return problems


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into error bodies."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _problems(exc)
        return error_response(
            422,
            "validation_failed",
            "invalid request: " + "; ".join(str(p) for p in problems[:5]),
            problems,
        )

    @app.exception_handler(ValidationFailed)
    async def _invalid(_request: Request, exc: ValidationFailed) -> JSONResponse:
        return error_response(
            422, "validation_failed", "invalid request: " + str(exc)[:500], exc.problems
        )

    @app.exception_handler(InvalidPhoneNumber)
    async def _bad_number(_request: Request, exc: InvalidPhoneNumber) -> JSONResponse:
        problem = FieldProblem("numbers", str(exc))
        return error_response(422, "validation_failed", str(exc), [problem])

    @app.exception_handler(UnsafeWebhookURL)
    async def _unsafe(_request: Request, exc: UnsafeWebhookURL) -> JSONResponse:
        return error_response(422, "validation_failed", str(exc), [FieldProblem("url", str(exc))])

    async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(404, "not_found", str(exc))

    for kind in (JobNotFound, CampaignNotFound, EndpointNotFound, DeliveryNotFound, ApiKeyNotFound):
        app.add_exception_handler(kind, _not_found)

    async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(409, "conflict", str(exc))

    for conflict in (JobConflict, CampaignConflict, WebhookError):
        app.add_exception_handler(conflict, _conflict)

    @app.exception_handler(ConfigError)
    async def _config(_request: Request, exc: ConfigError) -> JSONResponse:
        return error_response(503, "unavailable", str(exc))

    @app.exception_handler(redis.RedisError)
    async def _redis_down(_request: Request, exc: redis.RedisError) -> JSONResponse:
        log.error("Redis error while serving a request: %s", exc)
        return error_response(
            503,
            "unavailable",
            "Redis is unreachable or failing; check REDIS_URL and that Redis is up (GET /healthz)",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # the framework could not parse the body at all
            problem = FieldProblem("(body)", "cannot be parsed (send UTF-8 JSON)")
            return error_response(422, "validation_failed", "the body cannot be parsed", [problem])
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route; the API is described at /docs"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error: %s", type(exc).__name__)
        return error_response(500, "internal_error", "internal error; it has been logged")
