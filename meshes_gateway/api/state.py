"""The services every handler reaches through `request.app[GATEWAY]`."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.abc import AbstractResolver

from meshes_gateway.api.idempotency import IdempotencyGate
from meshes_gateway.api.ratelimit import RateLimiter
from meshes_gateway.clock import Clock
from meshes_gateway.config import Settings
from meshes_gateway.delivery.ssrf import AddressPolicy
from meshes_gateway.engine.directory import Directory
from meshes_gateway.engine.scheduler import Scheduler
from meshes_gateway.engine.sender import Sender
from meshes_gateway.engine.writer import Writer
from meshes_gateway.secretbox import SecretBox
from meshes_gateway.storage.base import Store


@dataclass
class Gateway:
    settings: Settings
    store: Store
    clock: Clock
    box: SecretBox
    directory: Directory
    writer: Writer
    scheduler: Scheduler
    sender: Sender
    policy: AddressPolicy
    # The DNS resolver behind both the create-time check and the sender's guard.
    resolver: AbstractResolver
    org_id: str
    idempotency: IdempotencyGate
    rate_limit: RateLimiter
    # access key -> secret key, filled on first successful check (saves a decrypt per call)
    api_secrets: dict[str, bytes] = field(default_factory=dict)


GATEWAY = web.AppKey("gateway", Gateway)
