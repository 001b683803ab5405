"""Stored records as Meshes' answer shapes (times as RFC 3339, ids as UUIDs)."""

from __future__ import annotations

from typing import Any

from meshes_gateway.ids import rfc3339
from meshes_gateway.storage.records import Connection, Event, Rule, RuleEvent, Workspace


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


def rule_event(re_: RuleEvent, event: Event, integration_type: str = "webhook") -> dict[str, Any]:
    return {
        "id": re_.id,
        "type": "rule",
        "workspace": re_.workspace_id,
        "event_id": re_.event_id,
        "event": event.event,
        "rule": re_.rule_id,
        "connection": re_.connection_id,
        "integration_type": integration_type,
        "status": re_.status,
        "attempt_count": re_.attempt_count,
        "resource": event.resource,
        "resource_id": event.resource_id,
        "last_error": re_.last_error,
        "next_attempt_at": _time(re_.next_attempt_at_ms if re_.status == "pending" else None),
        "started_at": _time(re_.started_at_ms),
        "completed_at": _time(re_.completed_at_ms),
        "created_by": event.created_by,
        "created_at": rfc3339(re_.created_at_ms),
    }


def event_status(rule_events: list[RuleEvent]) -> str:
    """An event's status from its deliveries: done when all are, failed if any failed."""
    statuses = {r.status for r in rule_events}
    if not statuses or statuses == {"completed"}:
        return "completed"
    if statuses <= {"completed", "failed"}:
        return "failed"
    if "processing" in statuses or statuses & {"completed", "failed"}:
        return "processing"
    return "pending"


def event(e: Event, rule_events: list[RuleEvent] | None = None) -> dict[str, Any]:
    res = rule_events or []
    done = [r.completed_at_ms for r in res if r.completed_at_ms is not None]
    started = [r.started_at_ms for r in res if r.started_at_ms is not None]
    status = event_status(res)
    body: dict[str, Any] = {
        "id": e.id,
        "type": "event",
        "workspace": e.workspace_id,
        "event": e.event,
        "resource": e.resource,
        "resource_id": e.resource_id,
        "status": status,
        "total_rules": len(res),
        "completed_count": sum(r.status == "completed" for r in res),
        "failed_count": sum(r.status == "failed" for r in res),
        "started_at": _time(min(started) if started else None),
        "completed_at": _time(
            max(done)
            if done and status in ("completed", "failed") and len(done) == len(res)
            else None
        ),
        "created_by": e.created_by,
        "created_at": rfc3339(e.created_at_ms),
    }
    if rule_events is not None:
        body["rule_events"] = [rule_event(r, e) for r in rule_events]
    return body
