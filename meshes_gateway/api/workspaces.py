"""Workspaces and their publishable keys."""

from __future__ import annotations

import msgspec
from aiohttp import web

from meshes_gateway.api import render
from meshes_gateway.api.auth import key_prefix, make_publishable_key
from meshes_gateway.api.http import json_body, json_response
from meshes_gateway.api.pagination import envelope, page_params
from meshes_gateway.api.state import GATEWAY, Gateway
from meshes_gateway.errors import Conflict, NotFound
from meshes_gateway.ids import is_uuid, new_id
from meshes_gateway.models import PublishableKeyCreate, WorkspaceCreate, WorkspaceUpdate
from meshes_gateway.storage.base import DuplicateName
from meshes_gateway.storage.records import PublishableKey, Workspace

_create = msgspec.json.Decoder(WorkspaceCreate)
_update = msgspec.json.Decoder(WorkspaceUpdate)
_key_create = msgspec.json.Decoder(PublishableKeyCreate)

routes = web.RouteTableDef()


async def load_workspace(gateway: Gateway, workspace_id: str) -> Workspace:
    """The workspace named in a path, or a 404."""
    found = (
        await gateway.store.get_workspace(workspace_id.lower()) if is_uuid(workspace_id) else None
    )
    if found is None:
        raise NotFound("Workspace not found")
    return found


async def _issue_key(gateway: Gateway, workspace_id: str, name: str) -> dict[str, str]:
    key_id = new_id()
    key, key_digest = make_publishable_key(workspace_id, key_id)
    await gateway.store.add_publishable_key(
        PublishableKey(
            id=key_id,
            workspace_id=workspace_id,
            name=name,
            prefix=key_prefix(workspace_id, key_id),
            digest=key_digest,
            created_at_ms=gateway.clock.now_ms(),
        )
    )
    return {"id": key_id, "name": name, "public_key": key}


@routes.get("/api/v1/workspaces")
async def list_workspaces(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    limit, after = page_params(request)
    page = await gateway.store.list_workspaces(limit, after)
    return json_response(envelope(page, limit, render.workspace))


@routes.post("/api/v1/workspaces")
async def create_workspace(request: web.Request) -> web.Response:
    """Create a workspace and its first publishable key (shown once, in this answer)."""
    gateway = request.app[GATEWAY]
    body = await json_body(request, _create)
    now = gateway.clock.now_ms()
    workspace = Workspace(
        id=new_id(),
        name=body.name,
        description=body.description,
        created_at_ms=now,
        updated_at_ms=now,
    )
    try:
        await gateway.store.create_workspace(workspace)
    except DuplicateName:
        raise Conflict(f"a workspace named {body.name!r} already exists") from None
    key = await _issue_key(gateway, workspace.id, "default")
    shown = render.workspace(workspace) | {"publishable_key": key}
    return json_response({"workspace": shown}, status=201)


@routes.get("/api/v1/workspaces/{workspace_id}")
async def get_workspace(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    workspace = await load_workspace(gateway, request.match_info["workspace_id"])
    key = await gateway.store.active_publishable_key(workspace.id)
    shown = render.workspace(workspace)
    # Only a digest is stored, so the key itself cannot be shown again: the
    # prefix identifies which key is active.
    shown["publishable_key"] = (
        {"id": key.id, "name": key.name, "public_key": key.prefix}
        if key
        else {"name": "", "public_key": ""}
    )
    return json_response(shown)


@routes.put("/api/v1/workspaces/{workspace_id}")
async def update_workspace(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    workspace = await load_workspace(gateway, request.match_info["workspace_id"])
    body = await json_body(request, _update)
    updated = msgspec.structs.replace(
        workspace,
        name=body.name,
        description=body.description,
        updated_at_ms=gateway.clock.now_ms(),
    )
    try:
        await gateway.store.update_workspace(updated)
    except DuplicateName:
        raise Conflict(f"a workspace named {body.name!r} already exists") from None
    return json_response(render.workspace(updated))


@routes.delete("/api/v1/workspaces/{workspace_id}")
async def delete_workspace(request: web.Request) -> web.Response:
    """Delete a workspace with its keys, connections and rules; its history stays."""
    gateway = request.app[GATEWAY]
    workspace = await load_workspace(gateway, request.match_info["workspace_id"])
    await gateway.store.delete_workspace(workspace.id)
    gateway.directory.forget_all()
    return json_response({"id": workspace.id, "deleted": True})


@routes.post("/api/v1/workspaces/{workspace_id}/publishable-keys")
async def issue_key(request: web.Request) -> web.Response:
    """Issue a new publishable key; older keys stay valid until revoked (no-downtime rotation)."""
    gateway = request.app[GATEWAY]
    workspace = await load_workspace(gateway, request.match_info["workspace_id"])
    body = (
        await json_body(request, _key_create) if request.can_read_body else PublishableKeyCreate()
    )
    key = await _issue_key(gateway, workspace.id, body.name)
    gateway.directory.forget_keys()
    return json_response({"publishable_key": key}, status=201)


@routes.delete("/api/v1/workspaces/{workspace_id}/publishable-keys/{key_id}")
async def revoke_key(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    workspace = await load_workspace(gateway, request.match_info["workspace_id"])
    key_id = request.match_info["key_id"]
    revoked = 0
    if is_uuid(key_id):
        revoked = await gateway.store.revoke_publishable_keys(
            workspace.id, key_id.lower(), gateway.clock.now_ms()
        )
    if not revoked:
        raise NotFound("publishable key not found or already revoked")
    gateway.directory.forget_keys()
    return json_response({"id": key_id.lower(), "revoked": True})
