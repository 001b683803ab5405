"""Fresh deliveries go from the group commit straight to the scheduler (no claim)."""

from __future__ import annotations

from meshes_gateway.storage.records import Event, RuleEvent
from tests.conftest import Api, Receiver


def fresh(now: int, connection_id: str = "c") -> tuple[RuleEvent, Event]:
    event = Event(
        id="e1",
        workspace_id="w",
        event="x",
        resource=None,
        resource_id=None,
        payload=b"{}",
        created_by="t",
        created_at_ms=now,
    )
    rule_event = RuleEvent(
        id="r1",
        event_id="e1",
        workspace_id="w",
        rule_id="rule",
        connection_id=connection_id,
        status="pending",
        attempt_count=0,
        next_attempt_at_ms=now,
        last_error=None,
        started_at_ms=None,
        completed_at_ms=None,
        created_at_ms=now,
    )
    return rule_event, event


async def test_ingested_deliveries_are_leased_in_their_own_commit(
    api: Api, receiver: Receiver
) -> None:
    ws, _, conn, _ = await api.setup_route(receiver.url())
    rule_event, event = fresh(api.gateway.clock.now_ms(), connection_id=conn)
    event.id = rule_event.event_id = "0193e000-0000-7000-8000-000000000001"
    event.workspace_id = rule_event.workspace_id = ws
    await api.gateway.writer.ingest([event], [rule_event], None)
    # Written as `processing` under the scheduler's lease, in the ingest transaction:
    # it never waited as `pending` for a claim.
    assert rule_event.status == "processing"
    assert rule_event.lease_until_ms is not None
    (got,) = await receiver.wait_for(1)
    assert got.headers["webhook-id"] == rule_event.id


async def test_a_handoff_that_lands_after_stop_is_released_not_sent(api: Api) -> None:
    scheduler = api.gateway.scheduler
    rule_event, event = fresh(api.gateway.clock.now_ms())
    taken = scheduler.take([rule_event])
    assert taken == [rule_event]
    assert rule_event.status == "processing"
    assert rule_event.lease_until_ms is not None
    await scheduler.stop(0)
    scheduler.start(taken, {event.id: event})
    assert scheduler.inflight == 0
    assert scheduler.late_handoffs == ["r1"]


async def test_take_respects_the_per_connection_cap(api: Api) -> None:
    scheduler = api.gateway.scheduler
    now = api.gateway.clock.now_ms()
    cap = api.gateway.settings.per_connection_inflight

    def batch() -> list[RuleEvent]:
        return [fresh(now)[0] for _ in range(40)]

    taken = scheduler.take(batch())
    assert len(taken) == cap
    assert scheduler.take(batch()) == []  # the connection is full
    scheduler.untake(taken)  # e.g. the commit failed
    assert len(scheduler.take(batch())) == cap
