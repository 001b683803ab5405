"""Column lists and row -> record converters shared by the SQL backends.

Both drivers hand back rows indexable by position (`sqlite3.Row`,
`asyncpg.Record`), and both backends store the same columns in the same
order, so one set of converters serves both.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from meshes_gateway.storage.records import (
    Attempt,
    Connection,
    Delivery,
    Event,
    IdempotencyRecord,
    PublishableKey,
    Rule,
    RuleEvent,
    Workspace,
)


class Row(Protocol):
    """What both drivers' rows offer: values by position."""

    def __getitem__(self, index: int, /) -> Any: ...


json_encode = msgspec.json.Encoder().encode
json_decode = msgspec.json.Decoder(dict[str, Any]).decode

WORKSPACE_COLS = "id, name, description, created_at_ms, updated_at_ms"
PUBKEY_COLS = "id, workspace_id, name, prefix, digest, created_at_ms, revoked_at_ms"
CONNECTION_COLS = (
    "id, workspace_id, type, name, metadata, secrets_enc, active, inactive_reason, hidden,"
    " created_by, created_at_ms, updated_at_ms, failing_since_ms"
)
RULE_COLS = (
    "id, workspace_id, connection_id, event, resource, resource_id, type, metadata, active,"
    " hidden, created_by, created_at_ms, updated_at_ms"
)
EVENT_COLS = (
    "id, workspace_id, event, resource, resource_id, payload, created_by, created_at_ms,"
    " status, total_rules, completed_count, failed_count, completed_at_ms"
)
# Listings leave the payload out: it can be 256 KiB per row.
EVENT_LIST_COLS = EVENT_COLS.replace("payload", "NULL")
RULE_EVENT_COLS = (
    "id, event_id, workspace_id, rule_id, connection_id, status, attempt_count,"
    " next_attempt_at_ms, last_error, started_at_ms, completed_at_ms, created_at_ms,"
    " trigger, schedule_attempts, lease_until_ms"
)
ATTEMPT_COLS = (
    "id, rule_event_id, attempted_at_ms, duration_ms, status_code, error, response_excerpt, trigger"
)
IDEMPOTENCY_COLS = "workspace_id, key, request_digest, status, body, created_at_ms"


def workspace(row: Row) -> Workspace:
    return Workspace(
        id=row[0], name=row[1], description=row[2], created_at_ms=row[3], updated_at_ms=row[4]
    )


def pubkey(row: Row) -> PublishableKey:
    return PublishableKey(
        id=row[0],
        workspace_id=row[1],
        name=row[2],
        prefix=row[3],
        digest=bytes(row[4]),
        created_at_ms=row[5],
        revoked_at_ms=row[6],
    )


def connection(row: Row) -> Connection:
    return Connection(
        id=row[0],
        workspace_id=row[1],
        type=row[2],
        name=row[3],
        metadata=json_decode(row[4]),
        secrets_enc=bytes(row[5]),
        active=bool(row[6]),
        inactive_reason=row[7],
        hidden=bool(row[8]),
        created_by=row[9],
        created_at_ms=row[10],
        updated_at_ms=row[11],
        failing_since_ms=row[12],
    )


def rule(row: Row) -> Rule:
    return Rule(
        id=row[0],
        workspace_id=row[1],
        connection_id=row[2],
        event=row[3],
        resource=row[4],
        resource_id=row[5],
        type=row[6],
        metadata=json_decode(row[7]),
        active=bool(row[8]),
        hidden=bool(row[9]),
        created_by=row[10],
        created_at_ms=row[11],
        updated_at_ms=row[12],
    )


def event(row: Row) -> Event:
    return Event(
        id=row[0],
        workspace_id=row[1],
        event=row[2],
        resource=row[3],
        resource_id=row[4],
        payload=b"" if row[5] is None else bytes(row[5]),
        created_by=row[6],
        created_at_ms=row[7],
        status=row[8],
        total_rules=row[9],
        completed_count=row[10],
        failed_count=row[11],
        completed_at_ms=row[12],
    )


def rule_event(row: Row) -> RuleEvent:
    return RuleEvent(
        id=row[0],
        event_id=row[1],
        workspace_id=row[2],
        rule_id=row[3],
        connection_id=row[4],
        status=row[5],
        attempt_count=row[6],
        next_attempt_at_ms=row[7],
        last_error=row[8],
        started_at_ms=row[9],
        completed_at_ms=row[10],
        created_at_ms=row[11],
        trigger=row[12],
        schedule_attempts=row[13],
        lease_until_ms=row[14],
    )


def delivery(row: Row) -> Delivery:
    return Delivery(
        rule_event=rule_event(row),
        event=row[15],
        resource=row[16],
        resource_id=row[17],
        created_by=row[18],
    )


def attempt(row: Row) -> Attempt:
    return Attempt(
        id=row[0],
        rule_event_id=row[1],
        attempted_at_ms=row[2],
        duration_ms=row[3],
        status_code=row[4],
        error=row[5],
        response_excerpt=None if row[6] is None else bytes(row[6]),
        trigger=row[7],
    )


def idempotency(row: Row) -> IdempotencyRecord:
    return IdempotencyRecord(
        workspace_id=row[0],
        key=row[1],
        request_digest=bytes(row[2]),
        status=row[3],
        body=bytes(row[4]),
        created_at_ms=row[5],
    )
