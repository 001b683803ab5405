"""Delivery history and replay: what happened to an event, a delivery, a connection.

Listings are newest first with opaque cursors; `since`/`until` (RFC 3339) become
id bounds because ids are UUIDv7, so every filter runs on an index.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from meshes_gateway.api import render
from meshes_gateway.api.http import json_body, json_response
from meshes_gateway.api.pagination import envelope, page_params
from meshes_gateway.api.state import GATEWAY, Gateway
from meshes_gateway.api.workspaces import load_workspace
from meshes_gateway.errors import BadRequest, Conflict, FieldError, NotFound, ProblemError
from meshes_gateway.ids import is_uuid, parse_rfc3339, uuid7_floor
from meshes_gateway.models import Body, Uuid
from meshes_gateway.storage.records import Delivery, DeliveryFilter, Event, EventFilter

STATUSES = frozenset({"pending", "processing", "completed", "failed"})
REPLAY_BATCH = 500

routes = web.RouteTableDef()


class BulkRetry(Body):
    """`POST /deliveries/retry`: failed deliveries of a workspace or connection in a time range."""

    workspace: Uuid | None = None
    connection: Uuid | None = None
    rule: Uuid | None = None
    since: str | None = None
    until: str | None = None


_bulk_retry = msgspec.json.Decoder(BulkRetry)


class TooEarly(ProblemError):
    """The delivery is still queued or in flight: nothing to retry yet."""

    status = 425
    title = "Too Early"
    slug = "too-early"


def _uuid_param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not is_uuid(value):
        raise BadRequest(f"`{name}` must be a UUID")
    return value.lower()


def _time_bounds(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """`since` (inclusive) and `until` (inclusive, to the millisecond) as id bounds."""
    bounds: list[str | None] = []
    for name, value, shift in (("since", since, 0), ("until", until, 1)):
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(uuid7_floor(parse_rfc3339(value) + shift))
        except ValueError:
            raise BadRequest(
                f"`{name}` must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"
            ) from None
    return bounds[0], bounds[1]


def _status_param(request: web.Request) -> str | None:
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(f"`status` must be one of {', '.join(sorted(STATUSES))}")
    return status


async def _load_event(gateway: Gateway, event_id: str) -> Event:
    event = await gateway.store.get_event(event_id.lower()) if is_uuid(event_id) else None
    if event is None:
        raise NotFound("Event not found")
    return event


async def _list_events(request: web.Request, workspace_id: str | None) -> web.Response:
    gateway = request.app[GATEWAY]
    limit, after = page_params(request)
    since, until = _time_bounds(request.query.get("since"), request.query.get("until"))
    filters = EventFilter(
        workspace_id=workspace_id or _uuid_param(request, "workspace"),
        event=request.query.get("event"),
        status=_status_param(request),
        resource=request.query.get("resource"),
        resource_id=request.query.get("resource_id"),
        after_id=since,
        before_id=until,
    )
    page = await gateway.store.list_events(filters, limit, after)
    return json_response(envelope(page, limit, render.event_row))


@routes.get("/api/v1/events")
async def list_events(request: web.Request) -> web.Response:
    return await _list_events(request, None)


@routes.get("/api/v1/workspaces/{workspace_id}/events")
async def list_workspace_events(request: web.Request) -> web.Response:
    workspace = await load_workspace(request.app[GATEWAY], request.match_info["workspace_id"])
    return await _list_events(request, workspace.id)


@routes.get("/api/v1/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    """An event with its rule events (status, attempts, last error, next attempt)."""
    gateway = request.app[GATEWAY]
    event = await _load_event(gateway, request.match_info["event_id"])
    rule_events = await gateway.store.rule_events_of([event.id])
    return json_response(render.event(event, rule_events))


@routes.get("/api/v1/events/{event_id}/payload")
async def get_event_payload(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    event = await _load_event(gateway, request.match_info["event_id"])
    rule_events = await gateway.store.rule_events_of([event.id])
    shown = render.event(event, rule_events)
    shown["payload"] = msgspec.Raw(event.payload)
    return json_response(shown)


async def _retry_one(gateway: Gateway, delivery: Delivery) -> Delivery:
    """Queue one settled delivery again (same webhook-id); 425 while it is still queued."""
    if delivery.rule_event.status in ("pending", "processing"):
        raise TooEarly("the delivery is still queued or in flight; nothing to retry yet")
    target = await gateway.directory.target(delivery.rule_event.connection_id)
    if target is None or not target.active:
        raise Conflict("the connection is deleted or disabled; re-enable it before replaying")
    await gateway.store.requeue([delivery.rule_event.id], gateway.clock.now_ms())
    gateway.scheduler.wake()
    again = await gateway.store.get_delivery(delivery.rule_event.id)
    assert again is not None
    return again


@routes.post("/api/v1/events/{event_id}/rules/{rule_id}/retry")
async def retry_event_rule(request: web.Request) -> web.Response:
    """Meshes' RetryEventRule: queue the event's delivery through this rule again."""
    gateway = request.app[GATEWAY]
    event = await _load_event(gateway, request.match_info["event_id"])
    rule_id = request.match_info["rule_id"]
    if not is_uuid(rule_id):
        raise NotFound("Rule event not found")
    page = await gateway.store.list_deliveries(
        DeliveryFilter(event_id=event.id, rule_id=rule_id.lower()), 1, None
    )
    if not page.records:
        raise NotFound("Rule event not found")
    return json_response(render.delivery(await _retry_one(gateway, page.records[0])))


@routes.post("/api/v1/events/{event_id}/replay")
async def replay_event(request: web.Request) -> web.Response:
    """Queue every settled delivery of an event again; queued ones are left as they are."""
    gateway = request.app[GATEWAY]
    event = await _load_event(gateway, request.match_info["event_id"])
    rule_events = await gateway.store.rule_events_of([event.id])
    queued = await gateway.store.requeue(
        [r.id for r in rule_events if r.status in ("completed", "failed")],
        gateway.clock.now_ms(),
    )
    if queued:
        gateway.scheduler.wake()
    rule_events = await gateway.store.rule_events_of([event.id])
    return json_response(
        {
            "queued": len(queued),
            "skipped": len(rule_events) - len(queued),
            "event": render.event(event, rule_events),
        }
    )


@routes.get("/api/v1/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    limit, after = page_params(request)
    since, until = _time_bounds(request.query.get("since"), request.query.get("until"))
    filters = DeliveryFilter(
        workspace_id=_uuid_param(request, "workspace"),
        status=_status_param(request),
        connection_id=_uuid_param(request, "connection"),
        rule_id=_uuid_param(request, "rule"),
        event_id=_uuid_param(request, "event"),
        after_id=since,
        before_id=until,
    )
    page = await gateway.store.list_deliveries(filters, limit, after)
    return json_response(envelope(page, limit, render.delivery))


async def _load_delivery(gateway: Gateway, delivery_id: str) -> Delivery:
    found = await gateway.store.get_delivery(delivery_id.lower()) if is_uuid(delivery_id) else None
    if found is None:
        raise NotFound("Delivery not found")
    return found


@routes.get("/api/v1/deliveries/{delivery_id}")
async def get_delivery(request: web.Request) -> web.Response:
    """A delivery with every attempt: time, duration, status or error, response excerpt."""
    gateway = request.app[GATEWAY]
    delivery = await _load_delivery(gateway, request.match_info["delivery_id"])
    attempts = await gateway.store.attempts_of(delivery.rule_event.id)
    shown = render.delivery(delivery)
    shown["attempts"] = [render.attempt(a) for a in attempts]
    return json_response(shown)


@routes.post("/api/v1/deliveries/{delivery_id}/retry")
async def retry_delivery(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    delivery = await _load_delivery(gateway, request.match_info["delivery_id"])
    return json_response(render.delivery(await _retry_one(gateway, delivery)))


@routes.post("/api/v1/deliveries/retry")
async def retry_failed(request: web.Request) -> web.Response:
    """Queue every failed delivery of a workspace or connection within a time range."""
    gateway = request.app[GATEWAY]
    body = await json_body(request, _bulk_retry)
    if body.workspace is None and body.connection is None:
        raise BadRequest(
            "name a `workspace` or a `connection`",
            errors=[FieldError("/connection", "a workspace or a connection is required")],
        )
    if body.connection is not None:
        target = await gateway.directory.target(body.connection.lower())
        if target is None:
            raise NotFound("Connection not found")
        if not target.active:
            raise Conflict("the connection is disabled; re-enable it before replaying")
    since, until = _time_bounds(body.since, body.until)
    filters = DeliveryFilter(
        workspace_id=body.workspace.lower() if body.workspace else None,
        connection_id=body.connection.lower() if body.connection else None,
        rule_id=body.rule.lower() if body.rule else None,
        after_id=since,
        before_id=until,
    )
    queued = 0
    # Bounded batches, each its own short transaction, walking forward by id:
    # ingest keeps flowing, and a delivery that fails again at once is not
    # picked up a second time by this same replay.
    while True:
        count, last = await gateway.store.requeue_failed(
            filters, gateway.clock.now_ms(), REPLAY_BATCH
        )
        queued += count
        if count:
            gateway.scheduler.wake()
        if count < REPLAY_BATCH or last is None:
            break
        # Ids have one length, so `last + "0"` is the least id greater than `last`.
        filters = msgspec.structs.replace(filters, after_id=last + "0")
    return json_response({"queued": queued})
