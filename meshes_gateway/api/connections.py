"""Webhook connections: where events go, how they are signed and authenticated."""

from __future__ import annotations

import base64
import binascii

import msgspec
from aiohttp import web

from meshes_gateway.api import render
from meshes_gateway.api.auth import caller_of
from meshes_gateway.api.http import decode, field_error, json_body, json_response, read_json_body
from meshes_gateway.api.pagination import envelope, page_params
from meshes_gateway.api.state import GATEWAY, Gateway
from meshes_gateway.api.workspaces import load_workspace
from meshes_gateway.delivery.signing import generate_secret
from meshes_gateway.delivery.ssrf import UrlRefused, vet_host
from meshes_gateway.engine.probe import ProbeResult, probe
from meshes_gateway.errors import Conflict, FieldError, NotFound, Unprocessable
from meshes_gateway.ids import is_uuid, new_id, rfc3339
from meshes_gateway.models import (
    ConnectionCreate,
    ConnectionDelete,
    ConnectionUpdate,
    WebhookMetadata,
)
from meshes_gateway.storage.records import Connection
from meshes_gateway.webhooks import (
    ROTATION_GRACE_MS,
    ConnectionSecrets,
    build_target,
    make_target,
    parse_metadata,
    public_metadata,
    seal,
    unseal,
)

_create = msgspec.json.Decoder(ConnectionCreate)
_update = msgspec.json.Decoder(ConnectionUpdate)
_delete = msgspec.json.Decoder(ConnectionDelete)

MAX_HEADERS = 5
# Headers the gateway sets itself; letting a connection override them would
# break signing or framing.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "user-agent",
        "accept-encoding",
        "authorization",  # set through `auth`, so it is encrypted at rest
        "cookie",
    }
)

routes = web.RouteTableDef()


async def load_connection(gateway: Gateway, connection_id: str) -> Connection:
    found = (
        await gateway.store.get_connection(connection_id.lower())
        if is_uuid(connection_id)
        else None
    )
    if found is None:
        raise NotFound("Connection not found")
    return found


def _metadata(raw: dict[str, object] | None) -> WebhookMetadata:
    if raw is None:
        raise Unprocessable(
            "`metadata` with at least a `url` is required",
            errors=[FieldError("/metadata", "required")],
        )
    try:
        metadata = parse_metadata(dict(raw))
    except msgspec.ValidationError as exc:
        err = field_error(exc, prefix="/metadata")
        raise Unprocessable(f"invalid metadata: {err.reason}", errors=[err]) from None
    if len(metadata.headers) > MAX_HEADERS:
        raise Unprocessable(
            f"at most {MAX_HEADERS} custom headers",
            errors=[FieldError("/metadata/headers", "too many headers")],
        )
    for name in metadata.headers:
        lowered = name.lower()
        if lowered in _RESERVED_HEADERS or lowered.startswith(("webhook-", "x-meshes-")):
            raise Unprocessable(
                f"header {name!r} is set by the gateway and cannot be overridden",
                errors=[FieldError(f"/metadata/headers/{name}", "reserved header")],
            )
    if metadata.signing is not None:
        name = metadata.signing.header.lower()
        if (
            name in _RESERVED_HEADERS
            or name.startswith("webhook-")
            or name in {h.lower() for h in metadata.headers}
        ):
            raise Unprocessable(
                "the HMAC header must not be a reserved or custom header",
                errors=[FieldError("/metadata/signing/header", "reserved header")],
            )
    if metadata.signing_secret is not None:
        try:
            key = base64.b64decode(metadata.signing_secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            key = b""
        if not 24 <= len(key) <= 64:
            raise Unprocessable(
                "a signing secret is whsec_ + base64 of 24 to 64 bytes",
                errors=[FieldError("/metadata/signing_secret", "invalid secret")],
            )
    auth = metadata.auth
    if auth is not None:
        needed = {
            "basic": ("username", "password"),
            "bearer": ("token",),
            "header": ("header", "value"),
            "none": (),
        }[auth.type]
        for member in needed:
            if getattr(auth, member) is None:
                raise Unprocessable(
                    f"auth type {auth.type!r} needs `{member}`",
                    errors=[FieldError(f"/metadata/auth/{member}", "required")],
                )
    return metadata


async def _vet_url(gateway: Gateway, url: str) -> None:
    """Refuse a URL whose scheme, host or resolved addresses the SSRF policy denies."""
    try:
        await vet_host(gateway.policy, gateway.resolver, gateway.policy.check_url(url))
    except UrlRefused as exc:
        raise Unprocessable(
            f"url refused: {exc}", errors=[FieldError("/metadata/url", str(exc))]
        ) from None


@routes.get("/api/v1/connections")
async def list_connections(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    limit, after = page_params(request)
    page = await gateway.store.list_connections(None, limit, after)
    return json_response(envelope(page, limit, render.connection))


@routes.get("/api/v1/workspaces/{workspace_id}/connections")
async def list_workspace_connections(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    workspace = await load_workspace(gateway, request.match_info["workspace_id"])
    limit, after = page_params(request)
    page = await gateway.store.list_connections(workspace.id, limit, after)
    return json_response(envelope(page, limit, render.connection))


@routes.post("/api/v1/connections")
async def create_connection(request: web.Request) -> web.Response:
    """Create a webhook connection; its `whsec_` signing secret is shown in this answer only."""
    gateway = request.app[GATEWAY]
    body = await json_body(request, _create)
    if body.type != "webhook":
        raise Unprocessable(
            "only `webhook` connections are supported by this gateway",
            errors=[FieldError("/type", "unsupported connection type")],
        )
    workspace = await load_workspace(gateway, body.workspace)
    metadata = _metadata(body.metadata)
    await _vet_url(gateway, metadata.url)
    signing_secret = metadata.signing_secret or generate_secret()
    secrets = ConnectionSecrets(signing_secret=signing_secret, auth=metadata.auth)
    connection_id = new_id()
    if not metadata.skip_test:
        target = make_target(connection_id, workspace.id, metadata, secrets, gateway.clock.now_ms())
        result = await probe(gateway.sender, gateway.clock, target)
        if not result.ok:
            raise Unprocessable(
                "the endpoint did not answer the signed test event with 2xx"
                " (fix it, or set metadata.skip_test)",
                errors=[FieldError("/metadata/url", "test event failed")],
                extra={"attempt": render.attempt(result.attempt)},
            )
    now = gateway.clock.now_ms()
    connection = Connection(
        id=connection_id,
        workspace_id=workspace.id,
        type="webhook",
        name=body.name,
        metadata=public_metadata(metadata),
        secrets_enc=seal(gateway.box, secrets),
        active=True,
        inactive_reason=None,
        hidden=body.hidden,
        created_by=caller_of(request).created_by,
        created_at_ms=now,
        updated_at_ms=now,
    )
    await gateway.store.create_connection(connection)
    shown = render.connection(connection)
    shown["metadata"] = shown["metadata"] | {"signing_secret": signing_secret}
    return json_response({"connection": shown}, status=201)


@routes.get("/api/v1/connections/{connection_id}")
async def get_connection(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    connection = await load_connection(gateway, request.match_info["connection_id"])
    return json_response(render.connection(connection))


@routes.put("/api/v1/connections/{connection_id}")
async def update_connection(request: web.Request) -> web.Response:
    """Update name, metadata, visibility; `"active": true` re-enables a disabled connection."""
    gateway = request.app[GATEWAY]
    connection = await load_connection(gateway, request.match_info["connection_id"])
    body = await json_body(request, _update)
    changes: dict[str, object] = {"name": body.name, "updated_at_ms": gateway.clock.now_ms()}
    if body.metadata is not None:
        metadata = _metadata(body.metadata)
        if metadata.signing_secret is not None:
            raise Unprocessable(
                "change the signing secret with POST /connections/{id}/rotate-secret",
                errors=[FieldError("/metadata/signing_secret", "not updatable")],
            )
        await _vet_url(gateway, metadata.url)
        secrets = unseal(gateway.box, connection.secrets_enc)
        if metadata.auth is not None:
            secrets.auth = metadata.auth
        elif secrets.auth is not None:
            # Credentials are never shown, so a client echoing the metadata it
            # read back cannot resend them: an absent `auth` keeps the old one.
            metadata.auth = secrets.auth
        changes["metadata"] = public_metadata(metadata)
        changes["secrets_enc"] = seal(gateway.box, secrets)
    if body.hidden is not None:
        changes["hidden"] = body.hidden
    if body.active is True:
        changes |= {"active": True, "inactive_reason": None, "failing_since_ms": None}
    updated = msgspec.structs.replace(connection, **changes)
    await gateway.store.update_connection(updated)
    if body.active is False and connection.active:
        # Its queued deliveries become failed (replayable once it is re-enabled).
        reason = "manually_inactivated"
        await gateway.store.disable_connections({connection.id: reason}, gateway.clock.now_ms())
        updated = msgspec.structs.replace(updated, active=False, inactive_reason=reason)
    gateway.directory.forget_connection(connection.id)
    return json_response(render.connection(updated))


@routes.delete("/api/v1/connections/{connection_id}")
async def delete_connection(request: web.Request) -> web.Response:
    """Delete a connection; 409 while rules use it unless `force_delete` (which drops them)."""
    gateway = request.app[GATEWAY]
    connection = await load_connection(gateway, request.match_info["connection_id"])
    body = ConnectionDelete()
    if request.can_read_body:
        raw = await read_json_body(request, 64 * 1024)
        if raw.strip():
            body = decode(raw, _delete)
    in_use = await gateway.store.list_rules(None, connection.id, 1, None)
    if in_use.records and not body.force_delete:
        raise Conflict("the connection is used by rules; delete them or set force_delete")
    await gateway.store.delete_connection(connection.id)
    gateway.directory.forget_connection(connection.id)
    gateway.directory.forget_rules(connection.workspace_id)
    return json_response({"id": connection.id, "type": connection.type})


@routes.post("/api/v1/connections/{connection_id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    """A new signing secret, shown once; the old one keeps signing for 24 hours."""
    gateway = request.app[GATEWAY]
    connection = await load_connection(gateway, request.match_info["connection_id"])
    secrets = unseal(gateway.box, connection.secrets_enc)
    now = gateway.clock.now_ms()
    new_secret = generate_secret()
    rotated = ConnectionSecrets(
        signing_secret=new_secret,
        previous_signing_secret=secrets.signing_secret,
        previous_expires_at_ms=now + ROTATION_GRACE_MS,
        auth=secrets.auth,
    )
    updated = msgspec.structs.replace(
        connection, secrets_enc=seal(gateway.box, rotated), updated_at_ms=now
    )
    await gateway.store.update_connection(updated)
    gateway.directory.forget_connection(connection.id)
    return json_response(
        {
            "id": connection.id,
            "signing_secret": new_secret,
            "previous_secret_expires_at": rfc3339(now + ROTATION_GRACE_MS),
        }
    )


def probe_answer(result: ProbeResult) -> dict[str, object]:
    return {
        "success": result.ok,
        "event_id": result.event_id,
        "delivery_id": result.rule_event_id,
        "attempt": render.attempt(result.attempt),
    }


@routes.post("/api/v1/connections/{connection_id}/test")
async def test_connection(request: web.Request) -> web.Response:
    """Send Test Event: one signed sample event, recorded in history as a test."""
    gateway = request.app[GATEWAY]
    connection = await load_connection(gateway, request.match_info["connection_id"])
    # A disabled connection can be tested too: that is how one checks it before re-enabling.
    target = build_target(connection, gateway.box, gateway.clock.now_ms())
    result = await probe(gateway.sender, gateway.clock, target, writer=gateway.writer)
    return json_response(probe_answer(result))
