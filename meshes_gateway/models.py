"""Request bodies of the public API, validated by msgspec with `Meta` constraints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

EVENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# A rule matches an exact name, a prefix (`invoice.*`) or everything (`*`).
RULE_PATTERN = r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}(\.\*)?)$"
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

EventName = Annotated[str, msgspec.Meta(pattern=EVENT_NAME)]
RulePattern = Annotated[str, msgspec.Meta(pattern=RULE_PATTERN)]
Uuid = Annotated[str, msgspec.Meta(pattern=UUID)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Description = Annotated[str, msgspec.Meta(max_length=2000)]
TimeoutS = Annotated[float, msgspec.Meta(gt=0, le=30)]
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")]
HeaderValue = Annotated[str, msgspec.Meta(max_length=4096, pattern=r"^[^\r\n\x00]*$")]


class Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of request bodies: unknown members are an error, so typos do not pass silently."""


class EventIn(Body):
    """One event as emitted (`POST /events`, and each item of `POST /events/bulk`)."""

    event: EventName
    # Kept as the exact bytes received: stored and forwarded without re-encoding.
    payload: msgspec.Raw
    resource: ShortText | None = None
    resource_id: ShortText | None = None
    type: Literal["event"] | None = None
    workspace: Uuid | None = None


class WorkspaceCreate(Body):
    name: Name
    description: Description | None = None


class WorkspaceUpdate(Body):
    name: Name
    description: Description | None = None


class PublishableKeyCreate(Body):
    name: Name = "default"


class WebhookAuth(Body):
    """How the gateway authenticates to the endpoint; secret parts are encrypted at rest."""

    type: Literal["none", "basic", "bearer", "header"] = "none"
    username: ShortText | None = None
    password: HeaderValue | None = None
    token: HeaderValue | None = None
    header: HeaderName | None = None
    value: HeaderValue | None = None


class SigningOptions(Body):
    """An extra Meshes-style HMAC of the body, besides the Standard Webhooks signature."""

    hmac: Literal["sha256", "sha512"] | None = None
    header: HeaderName = "X-Meshes-Signature"


SigningSecret = Annotated[str, msgspec.Meta(pattern=r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}$")]


class WebhookMetadata(Body):
    """A webhook connection's `metadata`."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    payload_format: Literal["wrapped", "raw"] = "wrapped"
    auth: WebhookAuth | None = None
    headers: dict[HeaderName, HeaderValue] = msgspec.field(default_factory=dict)
    timeout_s: TimeoutS | None = None
    skip_test: bool = False
    signing: SigningOptions | None = None
    # Bring your own secret (e.g. when moving from another provider); else one is made.
    signing_secret: SigningSecret | None = None


class ConnectionCreate(Body):
    workspace: Uuid
    type: str
    name: Name
    metadata: dict[str, Any] | None = None
    hidden: bool = False


class ConnectionUpdate(Body):
    name: Name
    metadata: dict[str, Any] | None = None
    hidden: bool | None = None
    active: bool | None = None


class ConnectionDelete(Body):
    force_delete: bool = False


class RuleCreate(Body):
    workspace: Uuid
    connection: Uuid
    event: RulePattern
    metadata: dict[str, Any]
    resource: ShortText | None = None
    resource_id: ShortText | None = None
    type: str = "webhook"
    active: bool = True
    hidden: bool = False
