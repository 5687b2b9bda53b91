"""`/v1/campaigns`: create with a policy, list, retrieve, change the policy, pause, resume,
progress."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from dialer.campaigns import Campaign, CampaignProgress
from dialer.http.auth import READ, WRITE
from dialer.http.errors import error_responses
from dialer.http.schemas import CampaignCreate, CampaignPolicyUpdate, PauseRequest
from dialer.http.state import services

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.post(
    "",
    status_code=201,
    response_model=Campaign,
    summary="Create a campaign",
    description=(
        "A campaign groups screenings (`campaign_id` on each request) and gives them a policy: "
        "calling window, retry policy, calls per second, concurrent calls. A job's own "
        "`calling_window` / `retry_policy` win over the campaign's. 200 when the same campaign "
        "already exists; 409 when it exists with a different name, policy or template."
    ),
    responses=error_responses(
        401, 403, 409, 422, 503, also={200: {"model": Campaign, "description": "Already exists"}}
    ),
    dependencies=[WRITE],
)
def create_campaign(body: CampaignCreate, request: Request, response: Response) -> Campaign:
    svc = services(request)
    campaign, created = svc.campaigns.create(
        body.id,
        now=svc.runtime.clock.now(),
        name=body.name,
        policy=body.policy,
        template=body.template,
        paused=body.paused,
    )
    response.status_code = 201 if created else 200
    return campaign


@router.get(
    "",
    response_model=list[Campaign],
    summary="List campaigns",
    responses=error_responses(401, 403, 503),
    dependencies=[READ],
)
def list_campaigns(request: Request) -> list[Campaign]:
    return services(request).campaigns.list()


@router.get(
    "/{campaign_id}",
    response_model=Campaign,
    summary="Retrieve a campaign",
    responses=error_responses(401, 403, 404, 503),
    dependencies=[READ],
)
def get_campaign(campaign_id: str, request: Request) -> Campaign:
    return services(request).campaigns.get(campaign_id)


@router.put(
    "/{campaign_id}/policy",
    response_model=Campaign,
    summary="Replace a campaign's policy (and template)",
    description="Applies to every later dial and retry decision of the campaign's jobs.",
    responses=error_responses(401, 403, 404, 422, 503),
    dependencies=[WRITE],
)
def set_policy(campaign_id: str, body: CampaignPolicyUpdate, request: Request) -> Campaign:
    svc = services(request)
    return svc.campaigns.set_policy(
        campaign_id, body.policy, now=svc.runtime.clock.now(), template=body.template
    )


@router.post(
    "/{campaign_id}/pause",
    response_model=Campaign,
    summary="Pause a campaign",
    description=(
        "No new dials for the campaign's jobs until it is resumed; calls in progress finish. "
        "Jobs keep their place and attempts."
    ),
    responses=error_responses(401, 403, 404, 422, 503),
    dependencies=[WRITE],
)
def pause(campaign_id: str, request: Request, body: PauseRequest | None = None) -> Campaign:
    svc = services(request)
    reason = body.reason if body is not None else ""
    return svc.campaigns.pause(campaign_id, now=svc.runtime.clock.now(), reason=reason)


@router.post(
    "/{campaign_id}/resume",
    response_model=Campaign,
    summary="Resume a paused campaign",
    responses=error_responses(401, 403, 404, 503),
    dependencies=[WRITE],
)
def resume(campaign_id: str, request: Request) -> Campaign:
    svc = services(request)
    return svc.campaigns.resume(campaign_id, now=svc.runtime.clock.now())


@router.get(
    "/{campaign_id}/progress",
    response_model=CampaignProgress,
    summary="A campaign's progress",
    description="Its jobs by state and finished jobs by final status.",
    responses=error_responses(401, 403, 404, 503),
    dependencies=[READ],
)
def progress(campaign_id: str, request: Request) -> CampaignProgress:
    return services(request).campaigns.progress(campaign_id)
