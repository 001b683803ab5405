"""Send Test Event: one signed request with a sample payload, outside the queue.

Used when a connection is created (its endpoint must answer 2xx unless
`skip_test`) and by the `/test` endpoints of connections and rules. Tests
that belong to a saved connection are recorded in history, marked `test`.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshes_gateway.clock import Clock
from meshes_gateway.engine.sender import AttemptResult, Sender
from meshes_gateway.engine.writer import Writer
from meshes_gateway.ids import new_id
from meshes_gateway.storage.records import (
    Attempt,
    Claimed,
    Event,
    Outcome,
    Rule,
    RuleEvent,
)
from meshes_gateway.webhooks import Target

SAMPLE_PAYLOAD = b'{"test":true,"message":"This is a test event sent by meshes-gateway."}'
TEST_EVENT = "meshes.test"
# Connection tests have no rule; their rule events point at the nil UUID.
NO_RULE = "00000000-0000-0000-0000-000000000000"


def test_event_name(rule: Rule | None) -> str:
    """The rule's own event when it names one exactly, else a name its pattern matches."""
    if rule is None or rule.event == "*":
        return TEST_EVENT
    if rule.event.endswith(".*"):
        return rule.event[:-1] + "test"
    return rule.event


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    attempt: Attempt
    rule_event_id: str
    event_id: str


async def probe(
    sender: Sender,
    clock: Clock,
    target: Target,
    *,
    rule: Rule | None = None,
    writer: Writer | None = None,
) -> ProbeResult:
    """Send one test event to `target`; record it in history when a writer is given."""
    now = clock.now_ms()
    event_id, rule_event_id = new_id(), new_id()
    name = test_event_name(rule)
    delivery = Claimed(
        rule_event_id=rule_event_id,
        event_id=event_id,
        workspace_id=target.workspace_id,
        rule_id=rule.id if rule else NO_RULE,
        connection_id=target.id,
        attempt_count=0,
        schedule_attempts=0,
        trigger="test",
        event=name,
        resource=rule.resource if rule else None,
        resource_id=rule.resource_id if rule else None,
        payload=SAMPLE_PAYLOAD,
        event_created_at_ms=now,
    )
    if writer is not None:
        await writer.ingest(*_history_rows(delivery, now), None)
    result: AttemptResult = await sender.send(target, delivery, now)
    ok = result.status_code is not None and 200 <= result.status_code < 300
    done = clock.now_ms()
    attempt = Attempt(
        id=new_id(),
        rule_event_id=rule_event_id,
        attempted_at_ms=now,
        duration_ms=result.duration_ms,
        status_code=result.status_code,
        error=result.error,
        response_excerpt=result.excerpt,
        trigger="test",
    )
    if writer is not None:
        # A test is one attempt: it is settled now and never retried.
        await writer.record(
            [
                Outcome(
                    rule_event_id=rule_event_id,
                    event_id=event_id,
                    connection_id=target.id,
                    endpoint_ok=None if result.refused else ok,
                    status="completed" if ok else "failed",
                    next_attempt_at_ms=None,
                    last_error=None if ok else (result.error or f"HTTP {result.status_code}"),
                    completed_at_ms=done,
                    attempt=attempt,
                )
            ]
        )
    return ProbeResult(ok=ok, attempt=attempt, rule_event_id=rule_event_id, event_id=event_id)


def _history_rows(delivery: Claimed, now: int) -> tuple[list[Event], list[RuleEvent]]:
    event = Event(
        id=delivery.event_id,
        workspace_id=delivery.workspace_id,
        event=delivery.event,
        resource=delivery.resource,
        resource_id=delivery.resource_id,
        payload=delivery.payload,
        created_by="test",
        created_at_ms=now,
        status="processing",
        total_rules=1,
    )
    # Inserted as `processing` so the scheduler never claims it: the probe sends it.
    rule_event = RuleEvent(
        id=delivery.rule_event_id,
        event_id=delivery.event_id,
        workspace_id=delivery.workspace_id,
        rule_id=delivery.rule_id,
        connection_id=delivery.connection_id,
        status="processing",
        attempt_count=0,
        next_attempt_at_ms=None,
        last_error=None,
        started_at_ms=now,
        completed_at_ms=None,
        created_at_ms=now,
        trigger="test",
    )
    return [event], [rule_event]
