"""Delivery history: what happened to an event and each of its deliveries."""

from __future__ import annotations

from aiohttp import web

from meshes_gateway.api import render
from meshes_gateway.api.http import json_response
from meshes_gateway.api.state import GATEWAY
from meshes_gateway.errors import NotFound
from meshes_gateway.ids import is_uuid

routes = web.RouteTableDef()


@routes.get("/api/v1/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    """An event with its rule events (status, attempts, last error, next attempt)."""
    gateway = request.app[GATEWAY]
    event_id = request.match_info["event_id"]
    event = await gateway.store.get_event(event_id.lower()) if is_uuid(event_id) else None
    if event is None:
        raise NotFound("Event not found")
    rule_events = await gateway.store.rule_events_of([event.id])
    return json_response(render.event(event, rule_events))
