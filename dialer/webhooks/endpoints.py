"""Webhook endpoints: the model, the Redis store and the config-file loader.

Storage: one Redis hash, `Keys.webhook_endpoints`, field = endpoint id, value = the endpoint's
JSON (secret included in clear: the receiver needs the same secret, so it cannot be hashed;
protect Redis like any secret store). Everything else shows the secret masked: `Endpoint.secret`
is a `SecretStr` (repr / str / logs print `**********`) and `Endpoint.public()` gives `whsec_…abcd`.

Config file: TOML (stdlib `tomllib`; comments allowed, no extra dependency). Example:

    # webhooks.toml  (`dialer webhooks load FILE`, or point DIALER_WEBHOOK_CONFIG at it)
    [delivery]
    retry_schedule = [5, 300, 1800, 7200, 18000, 36000, 36000]   # optional, seconds

    [[endpoints]]
    id = "ep_crm"                        # optional; default derived from the URL (stable)
    url = "https://crm.example.com/hooks/screening"
    events = ["screening.completed"]     # or ["*"] (the default)
    secret_env = "CRM_WEBHOOK_SECRET"    # required: secret_env, or secret = "whsec_..."
    description = "Main CRM"
    enabled = true                       # optional; when left out a stored state is kept

Every endpoint must name its secret (`secret`, or `secret_env`: the name of an environment
variable holding it): the receiver needs the same secret to verify, and a secret generated while
loading a file would never be shown to anyone.

Loading is an upsert by id: endpoints in the file are created or updated (the file's secret
replaces a stored one), endpoints added by CLI / API and not in the file are left alone, and a
stored enabled/disabled state is kept unless the file says `enabled`. `load_webhook_config`
checks every endpoint first and stores nothing when one is refused, then reports which were
added, updated or unchanged; the workers' lazy load (`DIALER_WEBHOOK_CONFIG`) stores what it can.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import secrets as _secrets
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, SecretStr

from dialer.errors import FieldProblem, ValidationFailed, WebhookError
from dialer.events import EVENT_TYPES
from dialer.keys import Keys
from dialer.scripts import reply_text
from dialer.webhooks.signing import generate_secret, mask_secret, validate_secret
from dialer.webhooks.urlguard import UrlGuard

ALL_EVENTS = "*"
_ID_RE = re.compile(r"ep_[A-Za-z0-9_-]{1,64}")


class EndpointNotFound(WebhookError):
    """No webhook endpoint with that id."""


class Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    url: str
    secret: SecretStr
    events: tuple[str, ...] = (ALL_EVENTS,)
    enabled: bool = True
    description: str = ""
    created_at: datetime
    disabled_reason: str | None = None

    def wants(self, event_type: str) -> bool:
        return ALL_EVENTS in self.events or event_type in self.events

    def secret_value(self) -> str:
        return self.secret.get_secret_value()

    def to_redis(self) -> str:
        body = self.model_dump(mode="json")
        body["secret"] = self.secret_value()
        return json.dumps(body, separators=(",", ":"))

    def public(self) -> dict[str, Any]:
        """For listings, the CLI and the HTTP API: the secret masked."""
        body = self.model_dump(mode="json")
        body["secret"] = mask_secret(self.secret_value())
        return body


@lru_cache(maxsize=1024)
def parse_endpoint(raw: str) -> Endpoint:
    """An endpoint from its stored JSON (cached: the hot path parses the same JSON repeatedly)."""
    return Endpoint.model_validate_json(raw)


def new_endpoint_id() -> str:
    return "ep_" + _secrets.token_hex(8)


def endpoint_id_for_url(url: str) -> str:
    """A stable id for a config-file endpoint that names none."""
    return "ep_" + hashlib.sha256(url.encode()).hexdigest()[:16]


def check_events(events: Iterable[str]) -> tuple[str, ...]:
    values = tuple(dict.fromkeys(events))
    if isinstance(events, str) or not values:
        raise ValidationFailed(
            [FieldProblem("events", f'must be a non-empty list of event types or ["{ALL_EVENTS}"]')]
        )
    unknown = [e for e in values if e != ALL_EVENTS and e not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(
            [
                FieldProblem(
                    "events",
                    f"unknown event type(s) {', '.join(unknown)}; known: "
                    f"{', '.join(EVENT_TYPES)} or {ALL_EVENTS}",
                )
            ]
        )
    return values


def check_endpoint_id(endpoint_id: str) -> str:
    if not isinstance(endpoint_id, str) or not _ID_RE.fullmatch(endpoint_id):
        raise ValidationFailed(
            [FieldProblem("id", "must be ep_ followed by 1-64 letters, digits, _ or -")]
        )
    return endpoint_id


_CAS = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


class EndpointStore:
    """add / get / list / remove / enable / disable, in the `Keys.webhook_endpoints` hash."""

    def __init__(self, client: redis.Redis, keys: Keys, guard: UrlGuard) -> None:
        self.r = client
        self.key = keys.webhook_endpoints
        self.guard = guard
        self._cas = client.register_script(_CAS)

    # -- reading ---------------------------------------------------------------------------------

    def get(self, endpoint_id: str) -> Endpoint:
        raw = self.r.hget(self.key, endpoint_id)
        if raw is None:
            raise EndpointNotFound(f"no webhook endpoint {endpoint_id!r}")
        return parse_endpoint(reply_text(raw))

    def list(self) -> list[Endpoint]:
        """Every endpoint, oldest first."""
        raw: dict[Any, Any] = self.r.hgetall(self.key)
        found = [parse_endpoint(reply_text(v)) for v in raw.values()]
        return sorted(found, key=lambda e: (e.created_at, e.id))

    # -- writing ---------------------------------------------------------------------------------

    def build(
        self,
        url: str,
        *,
        events: Sequence[str] = (ALL_EVENTS,),
        secret: str | None = None,
        description: str = "",
        endpoint_id: str | None = None,
        enabled: bool = True,
        now: datetime | None = None,
    ) -> Endpoint:
        """Validate everything (URL guard included) and return the endpoint, without storing."""
        problems: list[FieldProblem] = []
        checks: list[Callable[[], object]] = [lambda: check_events(events)]
        if secret is not None:
            checks.append(lambda: validate_secret(secret))
        if endpoint_id is not None:
            checks.append(lambda: check_endpoint_id(endpoint_id))
        for check in checks:
            try:
                check()
            except ValidationFailed as exc:
                problems.extend(exc.problems)
        if problems:
            raise ValidationFailed(problems)
        self.guard.check_url(url)  # ValidationFailed (shape) or UnsafeWebhookURL
        return Endpoint(
            id=endpoint_id or new_endpoint_id(),
            url=url,
            secret=SecretStr(secret or generate_secret()),
            events=check_events(events),
            enabled=enabled,
            description=description,
            created_at=now or datetime.now(UTC),
            disabled_reason=None if enabled else "disabled when added",
        )

    def add(
        self,
        url: str,
        *,
        events: Sequence[str] = (ALL_EVENTS,),
        secret: str | None = None,
        description: str = "",
        endpoint_id: str | None = None,
        enabled: bool = True,
        now: datetime | None = None,
    ) -> Endpoint:
        """Register an endpoint. A secret is generated when none is given (read it back from the
        returned endpoint's `secret_value()` once, to configure the receiver)."""
        endpoint = self.build(
            url,
            events=events,
            secret=secret,
            description=description,
            endpoint_id=endpoint_id,
            enabled=enabled,
            now=now,
        )
        if not self.r.hsetnx(self.key, endpoint.id, endpoint.to_redis()):
            raise WebhookError(f"webhook endpoint {endpoint.id!r} already exists")
        return endpoint

    def remove(self, endpoint_id: str) -> bool:
        """Delete the endpoint. Its pending deliveries go to the dead-letter list at their next
        try (reason: endpoint removed)."""
        return bool(self.r.hdel(self.key, endpoint_id))

    def enable(self, endpoint_id: str) -> Endpoint:
        return self._update(endpoint_id, enabled=True, disabled_reason=None)

    def disable(self, endpoint_id: str, reason: str = "disabled by operator") -> Endpoint:
        """Stop emitting to the endpoint; its pending deliveries are dead-lettered at their next
        try, replayable after `enable`."""
        return self._update(endpoint_id, enabled=False, disabled_reason=reason)

    def _update(self, endpoint_id: str, **changes: Any) -> Endpoint:
        # Compare-and-set on the stored JSON, so two concurrent updates cannot lose one.
        for _ in range(20):
            raw = self.r.hget(self.key, endpoint_id)
            if raw is None:
                raise EndpointNotFound(f"no webhook endpoint {endpoint_id!r}")
            updated = parse_endpoint(reply_text(raw)).model_copy(update=changes)
            if self._cas(keys=[self.key], args=[endpoint_id, raw, updated.to_redis()]):
                return updated
        raise WebhookError(f"webhook endpoint {endpoint_id!r} is being updated concurrently")

    def from_spec(
        self, spec: EndpointSpec, current: Endpoint | None, now: datetime | None = None
    ) -> Endpoint:
        """The endpoint a config-file entry describes, given what is stored under its id
        (validated, URL guard included; nothing stored)."""
        enabled = (
            spec.enabled
            if spec.enabled is not None
            else (current.enabled if current is not None else True)
        )
        endpoint = self.build(
            spec.url,
            events=spec.events,
            secret=spec.secret,
            description=spec.description,
            endpoint_id=spec.endpoint_id,
            enabled=enabled,
            now=current.created_at if current is not None else now,
        )
        if not enabled and current is not None and not current.enabled:
            endpoint = endpoint.model_copy(update={"disabled_reason": current.disabled_reason})
        elif not enabled:
            endpoint = endpoint.model_copy(update={"disabled_reason": "disabled in config"})
        return endpoint

    def apply(
        self, spec: EndpointSpec, now: datetime | None = None
    ) -> tuple[Endpoint, ConfigChange]:
        """Create or update the endpoint a config file describes; says which it was
        ("unchanged" when the stored endpoint already matched: nothing is written)."""
        endpoint_id = spec.endpoint_id
        for _ in range(20):
            raw = self.r.hget(self.key, endpoint_id)
            current = parse_endpoint(reply_text(raw)) if raw is not None else None
            endpoint = self.from_spec(spec, current, now)
            if current is not None and endpoint == current:
                return current, "unchanged"
            if raw is None:
                if self.r.hsetnx(self.key, endpoint_id, endpoint.to_redis()):
                    return endpoint, "added"
            elif self._cas(keys=[self.key], args=[endpoint_id, raw, endpoint.to_redis()]):
                return endpoint, "updated"
        raise WebhookError(f"webhook endpoint {endpoint_id!r} is being updated concurrently")

    def upsert(self, spec: EndpointSpec, now: datetime | None = None) -> Endpoint:
        """Create or update the endpoint a config file describes (see the module docstring)."""
        return self.apply(spec, now)[0]

    def sync(self, config: WebhookConfig, now: datetime | None = None) -> builtins.list[Endpoint]:
        """Upsert every endpoint of a loaded config file. One that cannot be stored (say the URL
        guard refuses it) does not stop the others; they are all reported together afterwards
        as one ValidationFailed naming each endpoint."""
        stored: list[Endpoint] = []
        problems: list[FieldProblem] = []
        for i, spec in enumerate(config.endpoints):
            try:
                stored.append(self.upsert(spec, now))
            except WebhookError as exc:
                problems.append(FieldProblem(f"endpoints[{i}] ({spec.url})", str(exc)))
            except ValidationFailed as exc:
                problems.extend(
                    FieldProblem(f"endpoints[{i}].{p.field}", p.message) for p in exc.problems
                )
        if problems:
            raise ValidationFailed(problems)
        return stored


# -- config file -----------------------------------------------------------------------------------


ConfigChange = Literal["added", "updated", "unchanged"]


@dataclass(frozen=True)
class EndpointSpec:
    """One `[[endpoints]]` entry of a config file. `secret` is required: see the module doc."""

    url: str
    secret: str
    id: str | None = None
    events: tuple[str, ...] = (ALL_EVENTS,)
    description: str = ""
    enabled: bool | None = None

    @property
    def endpoint_id(self) -> str:
        return self.id or endpoint_id_for_url(self.url)

    def __repr__(self) -> str:  # never print the secret
        return f"EndpointSpec(id={self.id!r}, url={self.url!r}, events={self.events!r})"


@dataclass(frozen=True)
class WebhookConfig:
    endpoints: tuple[EndpointSpec, ...] = ()
    retry_schedule: tuple[float, ...] | None = None


_ENDPOINT_KEYS = {"id", "url", "events", "secret", "secret_env", "description", "enabled"}


def parse_config(data: dict[str, Any], *, environ: dict[str, str] | None = None) -> WebhookConfig:
    """Validate a parsed config document. Every problem is reported with its place in the file."""
    env = os.environ if environ is None else environ
    problems: list[FieldProblem] = []
    unknown = sorted(set(data) - {"delivery", "endpoints"})
    if unknown:
        problems.append(FieldProblem(", ".join(unknown), "unknown section (delivery, endpoints)"))

    schedule: tuple[float, ...] | None = None
    delivery = data.get("delivery", {})
    if not isinstance(delivery, dict):
        problems.append(FieldProblem("delivery", "must be a table"))
        delivery = {}
    for key in sorted(set(delivery) - {"retry_schedule"}):
        problems.append(FieldProblem(f"delivery.{key}", "unknown setting (retry_schedule)"))
    if "retry_schedule" in delivery:
        raw = delivery["retry_schedule"]
        if isinstance(raw, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in raw
        ):
            schedule = tuple(float(v) for v in raw)
        else:
            problems.append(
                FieldProblem("delivery.retry_schedule", "must be a list of seconds (numbers >= 0)")
            )

    specs: list[EndpointSpec] = []
    entries = data.get("endpoints", [])
    if not isinstance(entries, list):
        problems.append(FieldProblem("endpoints", "must be an array of tables ([[endpoints]])"))
        entries = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"endpoints[{i}]"
        if not isinstance(entry, dict):
            problems.append(FieldProblem(where, "must be a table"))
            continue
        for key in sorted(set(entry) - _ENDPOINT_KEYS):
            problems.append(
                FieldProblem(f"{where}.{key}", f"unknown key ({', '.join(sorted(_ENDPOINT_KEYS))})")
            )
        url = entry.get("url")
        if not isinstance(url, str) or not url:
            problems.append(FieldProblem(f"{where}.url", "is required"))
            continue
        events = entry.get("events", [ALL_EVENTS])
        try:
            events = check_events(events if isinstance(events, list) else str(events))
        except ValidationFailed as exc:
            problems.extend(FieldProblem(f"{where}.{p.field}", p.message) for p in exc.problems)
            continue
        endpoint_id = entry.get("id")
        if endpoint_id is not None:
            try:
                check_endpoint_id(endpoint_id)
            except ValidationFailed as exc:
                problems.extend(FieldProblem(f"{where}.{p.field}", p.message) for p in exc.problems)
                continue
        resolved_id = endpoint_id or endpoint_id_for_url(url)
        if resolved_id in seen:
            problems.append(FieldProblem(f"{where}.id", f"duplicate endpoint {resolved_id}"))
            continue
        seen.add(resolved_id)
        label = f"endpoint {resolved_id} ({url})"
        if "secret" in entry and "secret_env" in entry:
            problems.append(
                FieldProblem(f"{where}.secret", f"{label}: give secret or secret_env, not both")
            )
            continue
        if "secret_env" in entry:
            name = entry["secret_env"]
            if not isinstance(name, str) or not name:
                problems.append(
                    FieldProblem(
                        f"{where}.secret_env",
                        f"{label}: must be the name of an environment variable holding the "
                        "whsec_ secret",
                    )
                )
                continue
            secret = env.get(name)
            if not secret:
                problems.append(
                    FieldProblem(
                        f"{where}.secret_env", f"{label}: environment variable {name} is not set"
                    )
                )
                continue
            secret_field = "secret_env"
        elif "secret" in entry:
            secret = entry["secret"]
            secret_field = "secret"
        else:
            problems.append(
                FieldProblem(
                    f"{where}.secret",
                    f'{label}: is required; give secret = "whsec_..." or secret_env = '
                    '"NAME" (an environment variable holding it), the same secret the '
                    "receiver verifies with",
                )
            )
            continue
        try:
            validate_secret(secret)
        except ValidationFailed as exc:
            problems.extend(
                FieldProblem(f"{where}.{secret_field}", f"{label}: {p.message}")
                for p in exc.problems
            )
            continue
        enabled = entry.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            problems.append(FieldProblem(f"{where}.enabled", "must be true or false"))
            continue
        description = entry.get("description", "")
        if not isinstance(description, str):
            problems.append(FieldProblem(f"{where}.description", "must be a string"))
            continue
        specs.append(
            EndpointSpec(
                url=url,
                secret=secret,
                id=endpoint_id,
                events=events,
                description=description,
                enabled=enabled,
            )
        )
    if problems:
        raise ValidationFailed(problems)
    return WebhookConfig(tuple(specs), schedule)


def load_config_file(path: Path | str, *, environ: dict[str, str] | None = None) -> WebhookConfig:
    """Read and validate a TOML webhook config file (format in the module docstring)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationFailed([FieldProblem(str(path), f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationFailed([FieldProblem(str(path), f"invalid TOML: {exc}")]) from None
    try:
        return parse_config(data, environ=environ)
    except ValidationFailed as exc:
        raise ValidationFailed(
            [FieldProblem(f"{path.name}: {p.field}", p.message) for p in exc.problems]
        ) from None


# -- `dialer webhooks load FILE` ---------------------------------------------------------------


@dataclass(frozen=True)
class ConfigEntryResult:
    endpoint_id: str
    url: str
    change: ConfigChange


@dataclass(frozen=True)
class ConfigLoadReport:
    """What `load_webhook_config` did (no secrets in here: safe to print)."""

    path: Path
    entries: tuple[ConfigEntryResult, ...]
    not_in_file: tuple[str, ...]  # stored endpoints the file does not mention: left alone
    retry_schedule: tuple[float, ...] | None  # applied by workers via DIALER_WEBHOOK_CONFIG

    def _ids(self, change: ConfigChange) -> tuple[str, ...]:
        return tuple(e.endpoint_id for e in self.entries if e.change == change)

    @property
    def added(self) -> tuple[str, ...]:
        return self._ids("added")

    @property
    def updated(self) -> tuple[str, ...]:
        return self._ids("updated")

    @property
    def unchanged(self) -> tuple[str, ...]:
        return self._ids("unchanged")


def load_webhook_config(
    store: EndpointStore,
    path: Path | str,
    *,
    now: datetime | None = None,
    environ: dict[str, str] | None = None,
) -> ConfigLoadReport:
    """Read a TOML webhook config file and store its endpoints (upsert by id), all or nothing.

    Every entry is validated first, URL guard included; if any is refused, ValidationFailed
    names each (`<file>: endpoints[i].<field>`) and nothing is stored. Otherwise each endpoint
    is added, updated or found unchanged, and the report says which.
    """
    path = Path(path)
    config = load_config_file(path, environ=environ)
    problems: list[FieldProblem] = []
    for i, spec in enumerate(config.endpoints):
        try:
            store.from_spec(spec, _stored(store, spec.endpoint_id), now)
        except ValidationFailed as exc:
            problems.extend(
                FieldProblem(f"{path.name}: endpoints[{i}].{p.field}", p.message)
                for p in exc.problems
            )
        except WebhookError as exc:  # UnsafeWebhookURL: the guard refused the URL
            problems.append(
                FieldProblem(f"{path.name}: endpoints[{i}].url", f"{spec.endpoint_id}: {exc}")
            )
    if problems:
        raise ValidationFailed(problems)
    entries = []
    for spec in config.endpoints:
        endpoint, change = store.apply(spec, now)
        entries.append(ConfigEntryResult(endpoint.id, endpoint.url, change))
    in_file = {e.endpoint_id for e in entries}
    return ConfigLoadReport(
        path=path,
        entries=tuple(entries),
        not_in_file=tuple(e.id for e in store.list() if e.id not in in_file),
        retry_schedule=config.retry_schedule,
    )


def _stored(store: EndpointStore, endpoint_id: str) -> Endpoint | None:
    try:
        return store.get(endpoint_id)
    except EndpointNotFound:
        return None
