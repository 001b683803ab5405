"""Domain records that cross the storage boundary. Times are integer milliseconds (UTC)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

RuleEventStatus = Literal["pending", "processing", "completed", "failed"]
Trigger = Literal["scheduled", "manual", "test"]


class Record(msgspec.Struct, kw_only=True):
    """Base of every stored record."""


class Workspace(Record):
    id: str
    name: str
    description: str | None
    created_at_ms: int
    updated_at_ms: int


class PublishableKey(Record):
    id: str
    workspace_id: str
    name: str
    prefix: str
    digest: bytes
    created_at_ms: int
    revoked_at_ms: int | None = None


class ApiKey(Record):
    access_key: str
    secret_enc: bytes
    created_at_ms: int


class Connection(Record):
    id: str
    workspace_id: str
    type: str
    name: str
    metadata: dict[str, Any]
    secrets_enc: bytes
    active: bool
    inactive_reason: str | None
    hidden: bool
    created_by: str
    created_at_ms: int
    updated_at_ms: int
    failing_since_ms: int | None = None


class Rule(Record):
    id: str
    workspace_id: str
    connection_id: str
    event: str
    resource: str | None
    resource_id: str | None
    type: str
    metadata: dict[str, Any]
    active: bool
    hidden: bool
    created_by: str
    created_at_ms: int
    updated_at_ms: int


class Event(Record):
    """An emitted event; `payload` is the exact JSON bytes received."""

    id: str
    workspace_id: str
    event: str
    resource: str | None
    resource_id: str | None
    payload: bytes
    created_by: str
    created_at_ms: int
    status: RuleEventStatus = "pending"
    total_rules: int = 0
    completed_count: int = 0
    failed_count: int = 0
    completed_at_ms: int | None = None


class RuleEvent(Record):
    """One delivery: an event routed by one rule to one connection."""

    id: str
    event_id: str
    workspace_id: str
    rule_id: str
    connection_id: str
    status: RuleEventStatus
    attempt_count: int
    next_attempt_at_ms: int | None
    last_error: str | None
    started_at_ms: int | None
    completed_at_ms: int | None
    created_at_ms: int
    trigger: Trigger = "scheduled"
    schedule_attempts: int = 0
    lease_until_ms: int | None = None


class IdempotencyRecord(Record):
    """The first answer to an `Idempotency-Key`, replayed for later requests with the same key."""

    workspace_id: str
    key: str
    request_digest: bytes
    status: int
    body: bytes
    created_at_ms: int


class Attempt(Record):
    """One HTTP request to an endpoint and what came of it."""

    id: str
    rule_event_id: str
    attempted_at_ms: int
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: bytes | None
    trigger: Trigger


class Outcome(Record):
    """A delivery's new state after an attempt, written together with the attempt."""

    rule_event_id: str
    event_id: str
    connection_id: str
    # Whether the endpoint answered 2xx; None when no request was made (refused).
    endpoint_ok: bool | None
    status: RuleEventStatus
    next_attempt_at_ms: int | None
    last_error: str | None
    completed_at_ms: int | None
    attempt: Attempt


class Claimed(Record):
    """A delivery claimed under a lease, with what the sender needs of its event."""

    rule_event_id: str
    event_id: str
    workspace_id: str
    rule_id: str
    connection_id: str
    attempt_count: int
    schedule_attempts: int
    trigger: Trigger
    event: str
    resource: str | None
    resource_id: str | None
    payload: bytes
    event_created_at_ms: int


class WriteBatch(Record):
    """Everything one group commit writes, in one transaction."""

    events: list[Event] = msgspec.field(default_factory=list)
    rule_events: list[RuleEvent] = msgspec.field(default_factory=list)
    idempotency: list[IdempotencyRecord] = msgspec.field(default_factory=list)
    outcomes: list[Outcome] = msgspec.field(default_factory=list)
    disable_connections: dict[str, str] = msgspec.field(default_factory=dict)
    now_ms: int = 0


class EventFilter(Record):
    """Filters of an event listing; `after`/`before` are id bounds (ids sort by time)."""

    workspace_id: str | None = None
    event: str | None = None
    status: str | None = None
    resource: str | None = None
    resource_id: str | None = None
    after_id: str | None = None
    before_id: str | None = None


class RuleFilter(Record):
    """Meshes' rule-listing filters: exact event pattern, resource, resource id."""

    event: str | None = None
    resource: str | None = None
    resource_id: str | None = None


class DeliveryFilter(Record):
    """Filters of a rule-event listing."""

    id: str | None = None
    workspace_id: str | None = None
    status: str | None = None
    connection_id: str | None = None
    rule_id: str | None = None
    event_id: str | None = None
    after_id: str | None = None
    before_id: str | None = None


class Delivery(Record):
    """A rule event with what its listing shows of its event."""

    rule_event: RuleEvent
    event: str
    resource: str | None
    resource_id: str | None
    created_by: str


class Page(Record):
    """One page of a listing; `next_cursor` is the id to continue after, or None at the end."""

    records: list[Any]
    next_cursor: str | None
