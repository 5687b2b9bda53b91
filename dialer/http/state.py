"""What every request handler shares: one Runtime and the services built on it."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from prometheus_client.registry import CollectorRegistry

from dialer.apikeys import ApiKeyStore
from dialer.campaigns import CampaignStore
from dialer.client import Dialer
from dialer.runtime import Runtime
from dialer.webhooks import WebhookService


@dataclass
class Services:
    runtime: Runtime
    dialer: Dialer
    campaigns: CampaignStore
    apikeys: ApiKeyStore
    webhooks: WebhookService
    registry: CollectorRegistry
    auth_off: bool
    broker_url: str | None


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
