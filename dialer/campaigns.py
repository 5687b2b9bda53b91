"""Campaigns: a named group of screenings with its own policy, that an operator can pause.

A campaign is optional. Jobs name one with `ScreeningRequest.campaign_id`; a campaign id that
was never created still groups its jobs (listing, progress), it just has no policy of its own.

Storage: one Redis hash per campaign, `Keys.campaign(id)` (its id is also in `Keys.campaigns`):

    name            free text for operators
    policy          JSON {calling_window?, retry_policy?, calls_per_second?,
                    max_concurrent_calls?}; `Runtime.campaign_policy` reads the first two for
                    every job of the campaign (a job's own calling_window / retry_policy win)
    template        JSON object merged under every row submitted in bulk for this campaign
                    (`/v1/screenings/batch?campaign_id=`, `dialer enqueue --campaign`):
                    job_title, questions, office, ... so a CSV only needs the candidates
    paused          "1" while paused, else "0"
    paused_at, pause_reason, resumed_at, created_at, updated_at

Pausing: `is_paused(campaign_id)` is one HGET; the dial task checks it right before dialing and
hands a paused campaign's job back to the due-set (re-checked every `PAUSED_RECHECK_S`), so a
paused campaign places no new dials. Calls already in progress finish normally.

`calls_per_second` and `max_concurrent_calls` are stored for the dial path; the trunk-wide
limits (`DIALER_CALLS_PER_SECOND`, `DIALER_MAX_CONCURRENT_CALLS`) always apply as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pydantic
import redis
from pydantic import BaseModel, ConfigDict, Field

from dialer.errors import DialerError, FieldProblem, ValidationFailed
from dialer.keys import Keys
from dialer.models import CallingWindow, JobState, RetryPolicy, ScreeningRequest, Status
from dialer.scripts import reply_text

# How long the dial task should wait before looking at a paused campaign's job again.
PAUSED_RECHECK_S = 60.0

CAMPAIGN_ID_RE = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_BATCH = 1000


class CampaignNotFound(DialerError):
    """No campaign with that id (never created and no job names it)."""


class CampaignConflict(DialerError):
    """The campaign exists with a different name, policy or template."""


class CampaignPolicy(BaseModel):
    """Per-campaign dialing policy. Every field is optional; unset ones fall back to the
    defaults (DESIGN section 5) or the trunk-wide settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calling_window: CallingWindow | None = None
    retry_policy: RetryPolicy | None = None
    calls_per_second: float | None = Field(default=None, gt=0, le=1000)
    max_concurrent_calls: int | None = Field(default=None, ge=1, le=100_000)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True)


class Campaign(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str = ""
    policy: CampaignPolicy = Field(default_factory=CampaignPolicy)
    template: dict[str, Any] = Field(default_factory=dict)
    paused: bool = False
    paused_at: datetime | None = None
    pause_reason: str | None = None
    resumed_at: datetime | None = None
    created_at: datetime | None = None  # None: known only from its jobs
    updated_at: datetime | None = None


class CampaignProgress(BaseModel):
    model_config = ConfigDict(frozen=True)

    campaign_id: str
    paused: bool
    total: int
    done: int
    pending: int
    by_state: dict[str, int]
    by_status: dict[str, int]


def check_campaign_id(campaign_id: str) -> str:
    if not isinstance(campaign_id, str) or not CAMPAIGN_ID_RE.fullmatch(campaign_id):
        raise ValidationFailed([FieldProblem("id", "must be 1-128 letters, digits or . _ : @ -")])
    return campaign_id


def check_template(template: Mapping[str, Any]) -> dict[str, Any]:
    """A template may only hold ScreeningRequest fields (not call_id / phone_number, which are
    per candidate); the values are validated with each row."""
    if not isinstance(template, Mapping):
        raise ValidationFailed([FieldProblem("template", "must be a JSON object")])
    allowed = set(ScreeningRequest.model_fields) - {"call_id", "phone_number"}
    unknown = sorted(str(k) for k in template if k not in allowed)
    if unknown:
        raise ValidationFailed(
            [
                FieldProblem(
                    f"template.{name}",
                    "not a screening request field a template may set"
                    + (" (it is per candidate)" if name in ("call_id", "phone_number") else ""),
                )
                for name in unknown
            ]
        )
    return dict(template)


def parse_policy(raw: Mapping[str, Any] | CampaignPolicy | None) -> CampaignPolicy:
    """A CampaignPolicy, or ValidationFailed naming each field (prefixed `policy.`)."""
    if raw is None:
        return CampaignPolicy()
    if isinstance(raw, CampaignPolicy):
        return raw
    try:
        return CampaignPolicy.model_validate(raw)
    except pydantic.ValidationError as exc:
        from dialer.intake import problems_from_pydantic

        raise ValidationFailed(
            [FieldProblem(f"policy.{p.field}", p.message) for p in problems_from_pydantic(exc)]
        ) from None


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class CampaignStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    # -- the dial gate ---------------------------------------------------------------------------

    def is_paused(self, campaign_id: str | None) -> bool:
        """True while the campaign is paused. No campaign (None) or an unknown id: False."""
        if not campaign_id:
            return False
        return reply_text(self.r.hget(self.keys.campaign(campaign_id), "paused")) == "1"

    def policy(self, campaign_id: str | None) -> CampaignPolicy | None:
        """The campaign's dialing policy (one HGET), or None when it has none."""
        if not campaign_id:
            return None
        raw = self.r.hget(self.keys.campaign(campaign_id), "policy")
        return parse_policy(json.loads(reply_text(raw))) if raw else None

    # -- reading ---------------------------------------------------------------------------------

    def exists(self, campaign_id: str) -> bool:
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(self.keys.campaign(campaign_id))
        pipe.sismember(self.keys.campaigns, campaign_id)
        pipe.exists(self.keys.campaign_jobs(campaign_id))
        return any(bool(x) for x in pipe.execute())

    def get(self, campaign_id: str) -> Campaign:
        raw: dict[str, str] = self.r.hgetall(self.keys.campaign(campaign_id))  # type: ignore[assignment]
        if not raw and not self.exists(campaign_id):
            raise CampaignNotFound(
                f"no campaign {campaign_id!r}: create it first, or submit jobs with this "
                "campaign_id"
            )
        return self._from_hash(campaign_id, {reply_text(k): reply_text(v) for k, v in raw.items()})

    def list(self) -> list[Campaign]:
        ids = sorted(reply_text(i) for i in self.r.smembers(self.keys.campaigns))
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for campaign_id in ids:
            pipe.hgetall(self.keys.campaign(campaign_id))
        return [
            self._from_hash(cid, {reply_text(k): reply_text(v) for k, v in h.items()})
            for cid, h in zip(ids, pipe.execute(), strict=True)
        ]

    def _from_hash(self, campaign_id: str, h: Mapping[str, str]) -> Campaign:
        policy = CampaignPolicy.model_validate_json(h["policy"]) if h.get("policy") else None
        return Campaign(
            id=campaign_id,
            name=h.get("name", ""),
            policy=policy or CampaignPolicy(),
            template=json.loads(h["template"]) if h.get("template") else {},
            paused=h.get("paused") == "1",
            paused_at=_dt(h.get("paused_at")),
            pause_reason=h.get("pause_reason") or None,
            resumed_at=_dt(h.get("resumed_at")),
            created_at=_dt(h.get("created_at")),
            updated_at=_dt(h.get("updated_at")),
        )

    # -- writing ---------------------------------------------------------------------------------

    def create(
        self,
        campaign_id: str,
        *,
        now: datetime,
        name: str = "",
        policy: Mapping[str, Any] | CampaignPolicy | None = None,
        template: Mapping[str, Any] | None = None,
        paused: bool = False,
    ) -> tuple[Campaign, bool]:
        """Create the campaign. Returns (campaign, created). Creating it again with the same
        name, policy and template is a no-op (created=False); different ones: CampaignConflict.
        A campaign known only from its jobs gets created (its jobs stay in it)."""
        problems: list[FieldProblem] = []
        parsed_policy = CampaignPolicy()
        checked_template: dict[str, Any] = {}
        for check in ("id", "policy", "template"):
            try:
                if check == "id":
                    check_campaign_id(campaign_id)
                elif check == "policy":
                    parsed_policy = parse_policy(policy)
                else:
                    checked_template = check_template(template or {})
            except ValidationFailed as exc:
                problems.extend(exc.problems)
        if problems:
            raise ValidationFailed(problems)
        key = self.keys.campaign(campaign_id)
        fields = {
            "name": name,
            "policy": parsed_policy.to_json(),
            "template": json.dumps(checked_template, sort_keys=True),
            "paused": "1" if paused else "0",
            "created_at": _ts(now),
            "updated_at": _ts(now),
        }
        if paused:
            fields["paused_at"] = _ts(now)
            fields["pause_reason"] = "created paused"
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    existing = pipe.hgetall(key)
                    current = {reply_text(k): reply_text(v) for k, v in existing.items()}
                    if current.get("created_at"):
                        pipe.unwatch()
                        found = self._from_hash(campaign_id, current)
                        if (
                            found.name != name
                            or found.policy != parsed_policy
                            or found.template != checked_template
                        ):
                            raise CampaignConflict(
                                f"campaign {campaign_id!r} already exists with a different name, "
                                "policy or template; change its policy with the policy "
                                "endpoint, or use a new id"
                            )
                        return found, False
                    pipe.multi()
                    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                    pipe.sadd(self.keys.campaigns, campaign_id)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        return self.get(campaign_id), True

    def set_policy(
        self,
        campaign_id: str,
        policy: Mapping[str, Any] | CampaignPolicy,
        *,
        now: datetime,
        template: Mapping[str, Any] | None = None,
    ) -> Campaign:
        """Replace the policy (and the template, when given). Applies to every later dial and
        retry decision of the campaign's jobs."""
        parsed = parse_policy(policy)
        self._require(campaign_id)
        fields = {"policy": parsed.to_json(), "updated_at": _ts(now)}
        if template is not None:
            fields["template"] = json.dumps(check_template(template), sort_keys=True)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.keys.campaign(campaign_id), mapping=fields)  # type: ignore[arg-type]
        pipe.hsetnx(self.keys.campaign(campaign_id), "created_at", _ts(now))
        pipe.sadd(self.keys.campaigns, campaign_id)
        pipe.execute()
        return self.get(campaign_id)

    def pause(self, campaign_id: str, *, now: datetime, reason: str = "") -> Campaign:
        """No new dials for this campaign until `resume` (calls in progress finish)."""
        self._require(campaign_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.keys.campaign(campaign_id),
            mapping={
                "paused": "1",
                "paused_at": _ts(now),
                "pause_reason": reason or "paused by operator",
                "updated_at": _ts(now),
            },
        )
        pipe.sadd(self.keys.campaigns, campaign_id)
        pipe.execute()
        return self.get(campaign_id)

    def resume(self, campaign_id: str, *, now: datetime) -> Campaign:
        """Dial again; a paused job is picked up at its next re-check (`PAUSED_RECHECK_S`)."""
        self._require(campaign_id)
        self.r.hset(
            self.keys.campaign(campaign_id),
            mapping={"paused": "0", "resumed_at": _ts(now), "updated_at": _ts(now)},
        )
        self.r.hdel(self.keys.campaign(campaign_id), "pause_reason")
        return self.get(campaign_id)

    def _require(self, campaign_id: str) -> None:
        if not self.exists(campaign_id):
            raise CampaignNotFound(
                f"no campaign {campaign_id!r}: create it first (POST /v1/campaigns or "
                "`dialer campaigns create`)"
            )

    # -- progress --------------------------------------------------------------------------------

    def progress(self, campaign_id: str) -> CampaignProgress:
        """Jobs of the campaign by state and by final status (read in batches of 1000)."""
        campaign = self.get(campaign_id)
        key = self.keys.campaign_jobs(campaign_id)
        by_state = {s.value: 0 for s in JobState}
        by_status: dict[str, int] = {}
        total = int(self.r.zcard(key))
        for offset in range(0, total, _BATCH):
            ids = [reply_text(i) for i in self.r.zrange(key, offset, offset + _BATCH - 1)]
            pipe = self.r.pipeline(transaction=False)
            for call_id in ids:
                pipe.hmget(self.keys.job(call_id), "state", "final_status")
            for state, final in pipe.execute():
                if state is None:
                    continue
                by_state[reply_text(state)] = by_state.get(reply_text(state), 0) + 1
                if final:
                    by_status[reply_text(final)] = by_status.get(reply_text(final), 0) + 1
        done = by_state.get(JobState.DONE.value, 0)
        counted = sum(by_state.values())
        return CampaignProgress(
            campaign_id=campaign_id,
            paused=campaign.paused,
            total=counted,
            done=done,
            pending=counted - done,
            by_state=by_state,
            by_status={s.value: by_status[s.value] for s in Status if s.value in by_status},
        )
