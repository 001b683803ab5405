"""Rules: which events (exact, `prefix.*` or `*`, optionally narrowed by resource) go where."""

from __future__ import annotations

import msgspec
from aiohttp import web

from meshes_gateway.api import render
from meshes_gateway.api.auth import caller_of
from meshes_gateway.api.connections import load_connection, probe_answer
from meshes_gateway.api.http import json_body, json_response
from meshes_gateway.api.pagination import envelope, page_params
from meshes_gateway.api.state import GATEWAY, Gateway
from meshes_gateway.api.workspaces import load_workspace
from meshes_gateway.engine.probe import probe
from meshes_gateway.errors import FieldError, NotFound, Unprocessable
from meshes_gateway.ids import is_uuid, new_id
from meshes_gateway.models import RuleCreate
from meshes_gateway.storage.records import Rule, RuleFilter
from meshes_gateway.webhooks import build_target

_create = msgspec.json.Decoder(RuleCreate)
# Meshes clients decode these metadata members as strings; anything else breaks them.
_STRING_METADATA = ("action", "id", "key", "name", "value", "data", "option", "option_value")

routes = web.RouteTableDef()


async def load_rule(gateway: Gateway, rule_id: str) -> Rule:
    found = await gateway.store.get_rule(rule_id.lower()) if is_uuid(rule_id) else None
    if found is None:
        raise NotFound("Rule not found")
    return found


def _check_metadata(metadata: dict[str, object]) -> None:
    for member in _STRING_METADATA:
        if member in metadata and not isinstance(metadata[member], str):
            raise Unprocessable(
                f"`metadata.{member}` must be a string",
                errors=[FieldError(f"/metadata/{member}", "Expected `str`")],
            )
    if metadata.get("action") != "send_webhook":
        raise Unprocessable(
            'webhook rules need `metadata.action` = "send_webhook"',
            errors=[FieldError("/metadata/action", 'expected "send_webhook"')],
        )


async def _list(request: web.Request, workspace_id: str | None) -> web.Response:
    gateway = request.app[GATEWAY]
    limit, after = page_params(request)
    filters = RuleFilter(
        event=request.query.get("event"),
        resource=request.query.get("resource"),
        resource_id=request.query.get("resource_id"),
    )
    page = await gateway.store.list_rules(workspace_id, None, limit, after, filters)
    return json_response(envelope(page, limit, render.rule))


@routes.get("/api/v1/rules")
async def list_rules(request: web.Request) -> web.Response:
    return await _list(request, None)


@routes.get("/api/v1/workspaces/{workspace_id}/rules")
async def list_workspace_rules(request: web.Request) -> web.Response:
    workspace = await load_workspace(request.app[GATEWAY], request.match_info["workspace_id"])
    return await _list(request, workspace.id)


@routes.post("/api/v1/rules")
async def create_rule(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    body = await json_body(request, _create)
    _check_metadata(body.metadata)
    workspace = await load_workspace(gateway, body.workspace)
    connection = await load_connection(gateway, body.connection)
    if connection.workspace_id != workspace.id:
        raise NotFound("Connection not found in this workspace")
    now = gateway.clock.now_ms()
    rule = Rule(
        id=new_id(),
        workspace_id=workspace.id,
        connection_id=connection.id,
        event=body.event,
        resource=body.resource,
        resource_id=body.resource_id,
        type=body.type,
        metadata=body.metadata,
        active=body.active,
        hidden=body.hidden,
        created_by=caller_of(request).created_by,
        created_at_ms=now,
        updated_at_ms=now,
    )
    await gateway.store.create_rule(rule)
    gateway.directory.forget_rules(workspace.id)
    return json_response({"rule": render.rule(rule)}, status=201)


@routes.get("/api/v1/rules/{rule_id}")
async def get_rule(request: web.Request) -> web.Response:
    rule = await load_rule(request.app[GATEWAY], request.match_info["rule_id"])
    return json_response(render.rule(rule))


@routes.delete("/api/v1/rules/{rule_id}")
async def delete_rule(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    rule = await load_rule(gateway, request.match_info["rule_id"])
    await gateway.store.delete_rule(rule.id)
    gateway.directory.forget_rules(rule.workspace_id)
    return json_response(
        {
            "id": rule.id,
            "connection": rule.connection_id,
            "event": rule.event,
            "type": rule.type,
            "resource": rule.resource,
            "resource_id": rule.resource_id,
        }
    )


@routes.post("/api/v1/rules/{rule_id}/test")
async def test_rule(request: web.Request) -> web.Response:
    """Send Test Event through this rule: an event its pattern matches, to its connection."""
    gateway = request.app[GATEWAY]
    rule = await load_rule(gateway, request.match_info["rule_id"])
    connection = await load_connection(gateway, rule.connection_id)
    target = build_target(connection, gateway.box, gateway.clock.now_ms())
    result = await probe(gateway.sender, gateway.clock, target, rule=rule, writer=gateway.writer)
    return json_response(probe_answer(result))
