"""Ingest: `POST /api/v1/events` and `POST /api/v1/events/bulk`.

An event is answered 201 only after the group commit that holds it and every
delivery it fans out to; nothing is written for a request that is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from meshes_gateway.api.auth import Caller, caller_of
from meshes_gateway.api.http import (
    decode,
    field_error,
    problem_body,
    raw_json_response,
    read_json_body,
)
from meshes_gateway.api.idempotency import Answer, IdempotencyGate, request_digest
from meshes_gateway.api.state import GATEWAY, Gateway
from meshes_gateway.engine.routing import matching_rules
from meshes_gateway.errors import (
    FieldError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    Unprocessable,
)
from meshes_gateway.ids import new_id, rfc3339
from meshes_gateway.models import EventIn
from meshes_gateway.storage.records import Event, IdempotencyRecord, RuleEvent

# What an answer is remembered as, given its status and body (None without a key).
_MakeRecord = Callable[[int, bytes], IdempotencyRecord]
_Producer = Callable[[_MakeRecord | None], Awaitable[Answer]]

MAX_EVENT_BYTES = 256 * 1024
MAX_BULK_BYTES = 5 * 1024 * 1024
MAX_BULK_EVENTS = 1000

_event_decoder = msgspec.json.Decoder(EventIn)
_bulk_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_encode = msgspec.json.Encoder().encode


class CreatedEvent(msgspec.Struct):
    """Meshes' CreatedEvent."""

    id: str
    event: str
    workspace: str
    created_by: str
    created_at: str
    resource: str | None
    resource_id: str | None
    type: str = "event"


class BulkResult(msgspec.Struct):
    count: int
    error_count: int
    records: list[Any]  # CreatedEvent, or the problem members of a refused record


def _payload_bytes(item: EventIn, pointer: str) -> bytes:
    payload = bytes(item.payload)
    if not payload.lstrip(b" \t\r\n").startswith(b"{"):
        raise Unprocessable(
            "`payload` must be a JSON object",
            errors=[FieldError(pointer + "/payload", "Expected `object`")],
        )
    return payload


def _key_workspace(caller: Caller, item: EventIn) -> str | None:
    """A publishable key's workspace (no I/O), or None for management callers."""
    if caller.workspace_id is None:
        return None
    if item.workspace is not None and item.workspace.lower() != caller.workspace_id:
        raise Forbidden("a publishable key may only emit into its own workspace")
    return caller.workspace_id


async def _workspace_for(gateway: Gateway, caller: Caller, item: EventIn) -> str:
    """The workspace an event goes to: the key's, or the body's for management callers."""
    own = _key_workspace(caller, item)
    if own is not None:
        return own
    if item.workspace is None:
        raise Unprocessable(
            "`workspace` is required when emitting with API credentials",
            errors=[FieldError("/workspace", "required")],
        )
    workspace_id = item.workspace.lower()
    if await gateway.store.get_workspace(workspace_id) is None:
        raise NotFound("workspace not found")
    return workspace_id


async def _route(
    gateway: Gateway, workspace_id: str, items: list[tuple[EventIn, bytes]], created_by: str
) -> tuple[list[Event], list[RuleEvent], list[CreatedEvent]]:
    """Events, their deliveries (one per matching rule) and the answers for them."""
    now = gateway.clock.now_ms()
    rules = await gateway.directory.rules(workspace_id)
    created_at = rfc3339(now)
    events: list[Event] = []
    deliveries: list[RuleEvent] = []
    answers: list[CreatedEvent] = []
    for item, payload in items:
        event_id = new_id(now)
        matched = matching_rules(rules, item.event, item.resource, item.resource_id)
        events.append(
            Event(
                id=event_id,
                workspace_id=workspace_id,
                event=item.event,
                resource=item.resource,
                resource_id=item.resource_id,
                payload=payload,
                created_by=created_by,
                created_at_ms=now,
                status="pending" if matched else "completed",
                total_rules=len(matched),
                completed_at_ms=None if matched else now,
            )
        )
        for rule in matched:
            deliveries.append(
                RuleEvent(
                    id=new_id(now),
                    event_id=event_id,
                    workspace_id=workspace_id,
                    rule_id=rule.id,
                    connection_id=rule.connection_id,
                    status="pending",
                    attempt_count=0,
                    next_attempt_at_ms=now,
                    last_error=None,
                    started_at_ms=None,
                    completed_at_ms=None,
                    created_at_ms=now,
                )
            )
        answers.append(
            CreatedEvent(
                id=event_id,
                event=item.event,
                workspace=workspace_id,
                created_by=created_by,
                created_at=created_at,
                resource=item.resource,
                resource_id=item.resource_id,
            )
        )
    return events, deliveries, answers


async def _idempotent(
    request: web.Request, gateway: Gateway, caller: Caller, body: bytes, produce: _Producer
) -> web.Response:
    """Run `produce` at most once per Idempotency-Key and replay its answer afterwards."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        answer = await produce(None)
        return raw_json_response(answer.body, answer.status)
    IdempotencyGate.check_key(key)
    gate = gateway.idempotency
    scope = caller.workspace_id or f"api:{caller.created_by}"
    digest = request_digest(body)
    earlier = await gate.claim(scope, key, digest)
    if earlier is not None:
        response = raw_json_response(earlier.body, earlier.status)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        answer = await produce(
            lambda status, answer_body: IdempotencyRecord(
                workspace_id=scope,
                key=key,
                request_digest=digest,
                status=status,
                body=answer_body,
                created_at_ms=gateway.clock.now_ms(),
            )
        )
    except BaseException:
        gate.abort(scope, key)
        raise
    gate.finish(scope, key, answer)
    return raw_json_response(answer.body, answer.status)


async def create_event(request: web.Request) -> web.Response:
    """`POST /api/v1/events`: one event, 201 once durable."""
    gateway = request.app[GATEWAY]
    caller = caller_of(request)
    body = await read_json_body(request, MAX_EVENT_BYTES)

    async def produce(make_record: _MakeRecord | None) -> Answer:
        item = decode(body, _event_decoder)
        payload = _payload_bytes(item, "")
        if caller.key_id is not None:
            await gateway.rate_limit.take(caller.key_id, 1)
        workspace_id = await _workspace_for(gateway, caller, item)
        events, deliveries, answers = await _route(
            gateway, workspace_id, [(item, payload)], caller.created_by
        )
        answer_body = _encode({"event": answers[0]})
        record = make_record(201, answer_body) if make_record else None
        await gateway.writer.ingest(events, deliveries, record)
        return Answer(201, answer_body)

    return await _idempotent(request, gateway, caller, body, produce)


async def create_bulk(request: web.Request) -> web.Response:
    """`POST /api/v1/events/bulk`: up to 1,000 events; 201 if all accepted, 207 if some."""
    gateway = request.app[GATEWAY]
    caller = caller_of(request)
    body = await read_json_body(request, MAX_BULK_BYTES)

    async def produce(make_record: _MakeRecord | None) -> Answer:
        raws = decode(body, _bulk_decoder)
        if not 1 <= len(raws) <= MAX_BULK_EVENTS:
            raise Unprocessable(
                f"a bulk request carries 1 to {MAX_BULK_EVENTS} events, not {len(raws)}",
                errors=[FieldError("", f"expected 1 to {MAX_BULK_EVENTS} items")],
            )
        if caller.key_id is not None:
            await gateway.rate_limit.take(caller.key_id, len(raws))
        accepted, rejected = await _validate_each(gateway, caller, raws)
        if not accepted:
            raise Unprocessable(
                "no event in the batch is valid",
                errors=[e for _, err in rejected for e in err.errors]
                or [FieldError(f"/{i}", err.detail) for i, err in rejected],
            )
        by_workspace: dict[str, list[tuple[int, EventIn, bytes]]] = {}
        for index, workspace_id, item, payload in accepted:
            by_workspace.setdefault(workspace_id, []).append((index, item, payload))
        records: list[Any] = [None] * len(raws)
        all_events: list[Event] = []
        all_deliveries: list[RuleEvent] = []
        for workspace_id, group in by_workspace.items():
            events, deliveries, answers = await _route(
                gateway, workspace_id, [(i, p) for _, i, p in group], caller.created_by
            )
            all_events += events
            all_deliveries += deliveries
            for (index, _, _), created in zip(group, answers, strict=True):
                records[index] = created
        for index, err in rejected:
            records[index] = {"index": index, **problem_body(err)}
        status = 201 if not rejected else 207
        answer_body = _encode(
            BulkResult(
                count=len(accepted),
                error_count=len(rejected),
                records=[r for r in records if r is not None],
            )
        )
        record = make_record(status, answer_body) if make_record else None
        await gateway.writer.ingest(all_events, all_deliveries, record)
        return Answer(status, answer_body)

    return await _idempotent(request, gateway, caller, body, produce)


async def _validate_each(
    gateway: Gateway, caller: Caller, raws: list[msgspec.Raw]
) -> tuple[list[tuple[int, str, EventIn, bytes]], list[tuple[int, ProblemError]]]:
    accepted: list[tuple[int, str, EventIn, bytes]] = []
    rejected: list[tuple[int, ProblemError]] = []
    for index, raw in enumerate(raws):
        try:
            if len(raw) > MAX_EVENT_BYTES:
                raise PayloadTooLarge(f"event {index} is over {MAX_EVENT_BYTES} bytes")
            try:
                item = _event_decoder.decode(raw)
            except msgspec.ValidationError as exc:
                err = field_error(exc, prefix=f"/{index}")
                raise Unprocessable(err.reason, errors=[err]) from None
            payload = _payload_bytes(item, f"/{index}")
            workspace_id = _key_workspace(caller, item) or await _workspace_for(
                gateway, caller, item
            )
        except ProblemError as err:
            rejected.append((index, err))
            continue
        accepted.append((index, workspace_id, item, payload))
    return accepted, rejected
