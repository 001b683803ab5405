"""Stored records as Meshes' answer shapes (times as RFC 3339, ids as UUIDs)."""

from __future__ import annotations

from typing import Any, Protocol

from meshes_gateway.ids import rfc3339
from meshes_gateway.storage.records import (
    Attempt,
    Connection,
    Delivery,
    Event,
    Rule,
    RuleEvent,
    Workspace,
)


class EventHead(Protocol):
    """What a rule event shows of its event (an `Event` or a `Delivery` row)."""

    @property
    def event(self) -> str: ...
    @property
    def resource(self) -> str | None: ...
    @property
    def resource_id(self) -> str | None: ...
    @property
    def created_by(self) -> str: ...


def _time(ms: int | None) -> str | None:
    return rfc3339(ms) if ms is not None else None


def workspace(w: Workspace) -> dict[str, Any]:
    return {
        "id": w.id,
        "name": w.name,
        "description": w.description,
        "created_at": rfc3339(w.created_at_ms),
        "updated_at": rfc3339(w.updated_at_ms),
    }


def connection(c: Connection) -> dict[str, Any]:
    return {
        "id": c.id,
        "workspace": c.workspace_id,
        "type": c.type,
        "name": c.name,
        "metadata": c.metadata,
        "active": c.active,
        "inactive_reason": c.inactive_reason,
        "hidden": c.hidden,
        "failing_since": _time(c.failing_since_ms),
        "created_by": c.created_by,
        "created_at": rfc3339(c.created_at_ms),
        "updated_at": rfc3339(c.updated_at_ms),
    }


def rule(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "workspace": r.workspace_id,
        "connection": r.connection_id,
        "event": r.event,
        "resource": r.resource,
        "resource_id": r.resource_id,
        "type": r.type,
        "metadata": r.metadata,
        "active": r.active,
        "hidden": r.hidden,
        "created_by": r.created_by,
        "created_at": rfc3339(r.created_at_ms),
        "updated_at": rfc3339(r.updated_at_ms),
    }


def rule_event(re_: RuleEvent, event: EventHead) -> dict[str, Any]:
    return {
        "id": re_.id,
        "type": "rule",
        "workspace": re_.workspace_id,
        "event_id": re_.event_id,
        "event": event.event,
        "rule": re_.rule_id,
        "connection": re_.connection_id,
        "integration_type": "webhook",
        "status": re_.status,
        "attempt_count": re_.attempt_count,
        "resource": event.resource,
        "resource_id": event.resource_id,
        "last_error": re_.last_error,
        "next_attempt_at": _time(re_.next_attempt_at_ms if re_.status == "pending" else None),
        "started_at": _time(re_.started_at_ms),
        "completed_at": _time(re_.completed_at_ms),
        "trigger": re_.trigger,
        "created_by": event.created_by,
        "created_at": rfc3339(re_.created_at_ms),
    }


def delivery(d: Delivery) -> dict[str, Any]:
    return rule_event(d.rule_event, d)


def attempt(a: Attempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "attempted_at": rfc3339(a.attempted_at_ms),
        "duration_ms": a.duration_ms,
        "status_code": a.status_code,
        "error": a.error,
        "response_excerpt": (
            a.response_excerpt.decode("utf-8", errors="replace")
            if a.response_excerpt is not None
            else None
        ),
        "trigger": a.trigger,
    }


def event_status(rule_events: list[RuleEvent]) -> str:
    """An event's status from its deliveries (the rule the store's aggregate follows too).

    completed: all delivered; failed: all settled, some failed; pending: nothing
    attempted yet; processing: anything in between.
    """
    settled = [r.status for r in rule_events if r.status in ("completed", "failed")]
    if all(s == "completed" for s in settled) and len(settled) == len(rule_events):
        return "completed"
    if len(settled) == len(rule_events):
        return "failed"
    if all(r.status == "pending" and r.attempt_count == 0 for r in rule_events):
        return "pending"
    return "processing"


def event_row(e: Event) -> dict[str, Any]:
    """A listed event: status and counts as stored with the last batch of outcomes."""
    return {
        "id": e.id,
        "type": "event",
        "workspace": e.workspace_id,
        "event": e.event,
        "resource": e.resource,
        "resource_id": e.resource_id,
        "status": e.status,
        "total_rules": e.total_rules,
        "completed_count": e.completed_count,
        "failed_count": e.failed_count,
        "completed_at": _time(e.completed_at_ms),
        "created_by": e.created_by,
        "created_at": rfc3339(e.created_at_ms),
    }


def event(e: Event, rule_events: list[RuleEvent]) -> dict[str, Any]:
    """One event with its deliveries; status and counts computed from them, live."""
    done = [r.completed_at_ms for r in rule_events if r.completed_at_ms is not None]
    started = [r.started_at_ms for r in rule_events if r.started_at_ms is not None]
    status = event_status(rule_events)
    settled = done and status in ("completed", "failed") and len(done) == len(rule_events)
    return event_row(e) | {
        "status": status,
        "total_rules": len(rule_events),
        "completed_count": sum(r.status == "completed" for r in rule_events),
        "failed_count": sum(r.status == "failed" for r in rule_events),
        "started_at": _time(min(started) if started else None),
        "completed_at": _time(max(done) if settled else None),
        "rule_events": [rule_event(r, e) for r in rule_events],
    }
