"""What every `Store` promises: atomic writes, exclusive claims, leases, outcomes, history."""

from __future__ import annotations

import asyncio

import pytest

from meshes_gateway.ids import new_id, uuid7_floor
from meshes_gateway.storage.base import Store, StoreError
from meshes_gateway.storage.records import (
    Attempt,
    DeliveryFilter,
    Event,
    EventFilter,
    IdempotencyRecord,
    Outcome,
    RuleEvent,
    WriteBatch,
)

NOW = 1_795_000_000_000
WS = "01930000-0000-7000-8000-0000000000aa"


def event_with(
    rules: int, at_ms: int = NOW, connection: str = "c1"
) -> tuple[Event, list[RuleEvent]]:
    event = Event(
        id=new_id(at_ms),
        workspace_id=WS,
        event="invoice.paid",
        resource="invoice",
        resource_id="in_1",
        payload=b'{"amount": 1}',
        created_by="pub_key",
        created_at_ms=at_ms,
        status="pending" if rules else "completed",
        total_rules=rules,
    )
    deliveries = [
        RuleEvent(
            id=new_id(at_ms),
            event_id=event.id,
            workspace_id=WS,
            rule_id=f"rule{i}",
            connection_id=connection,
            status="pending",
            attempt_count=0,
            next_attempt_at_ms=at_ms,
            last_error=None,
            started_at_ms=None,
            completed_at_ms=None,
            created_at_ms=at_ms,
        )
        for i in range(rules)
    ]
    return event, deliveries


async def ingest(store: Store, count: int, rules: int = 1, **kw: object) -> list[Event]:
    events, deliveries = [], []
    for _ in range(count):
        e, d = event_with(rules, **kw)  # type: ignore[arg-type]
        events.append(e)
        deliveries += d
    await store.write(WriteBatch(events=events, rule_events=deliveries))
    return events


def outcome(rule_event_id: str, event_id: str, status: str, at_ms: int = NOW) -> Outcome:
    return Outcome(
        rule_event_id=rule_event_id,
        event_id=event_id,
        connection_id="c1",
        endpoint_ok=status == "completed",
        status=status,  # type: ignore[arg-type]
        next_attempt_at_ms=at_ms + 5000 if status == "pending" else None,
        last_error=None if status == "completed" else "HTTP 500",
        completed_at_ms=at_ms if status in ("completed", "failed") else None,
        attempt=Attempt(
            id=new_id(at_ms),
            rule_event_id=rule_event_id,
            attempted_at_ms=at_ms,
            duration_ms=3,
            status_code=200 if status == "completed" else 500,
            error=None,
            response_excerpt=b"ok",
            trigger="scheduled",
        ),
    )


async def test_a_batch_is_all_or_nothing(store: Store) -> None:
    (event,) = await ingest(store, 1, rules=3)
    assert len(await store.rule_events_of([event.id])) == 3
    duplicate, deliveries = event_with(2)
    duplicate.id = event.id  # primary key clash: the whole batch must fail
    with pytest.raises(StoreError):
        await store.write(WriteBatch(events=[duplicate], rule_events=deliveries))
    assert await store.count_rule_events("pending") == 3


async def test_claims_are_exclusive_under_concurrency(store: Store) -> None:
    await ingest(store, 200)
    batches = await asyncio.gather(*(store.claim_due(NOW, 50, NOW + 60_000, {}) for _ in range(6)))
    ids = [c.rule_event_id for batch in batches for c in batch]
    assert len(ids) == 200
    assert len(set(ids)) == 200
    assert await store.claim_due(NOW, 50, NOW + 60_000, {}) == []


async def test_claim_skips_excluded_connections_and_future_rows(store: Store) -> None:
    await ingest(store, 3, connection="busy")
    await ingest(store, 2, at_ms=NOW + 10_000)
    assert await store.claim_due(NOW, 10, NOW + 60_000, {"busy": 0}) == []
    assert len(await store.claim_due(NOW, 10, NOW + 60_000, {})) == 3
    assert len(await store.claim_due(NOW + 10_000, 10, NOW + 70_000, {})) == 2


async def test_claims_take_no_more_per_connection_than_it_has_room_for(store: Store) -> None:
    await ingest(store, 10, connection="hot")
    await ingest(store, 3, connection="cool")
    claimed = await store.claim_due(NOW, 50, NOW + 60_000, {"hot": 2}, per_connection=4)
    assert sorted(c.connection_id for c in claimed) == ["cool"] * 3 + ["hot"] * 2
    claimed = await store.claim_due(NOW, 50, NOW + 60_000, {}, per_connection=4)
    assert [c.connection_id for c in claimed] == ["hot"] * 4
    assert await store.count_rule_events("pending") == 4


async def test_expired_leases_are_claimed_again(store: Store) -> None:
    await ingest(store, 1)
    (first,) = await store.claim_due(NOW, 10, NOW + 1_000, {})
    assert await store.release_expired(NOW + 999) == 0
    assert await store.release_expired(NOW + 1_000) == 1
    (again,) = await store.claim_due(NOW + 1_000, 10, NOW + 2_000, {})
    assert again.rule_event_id == first.rule_event_id
    assert again.payload == b'{"amount": 1}'


async def test_outcomes_settle_deliveries_and_their_event(store: Store) -> None:
    (event,) = await ingest(store, 1, rules=2)
    claimed = await store.claim_due(NOW, 10, NOW + 60_000, {})
    a, b = (c.rule_event_id for c in claimed)
    await store.write(WriteBatch(outcomes=[outcome(a, event.id, "completed")]))
    page = await store.list_events(EventFilter(workspace_id=WS), 10, None)
    assert page.records[0].status == "processing"
    await store.write(WriteBatch(outcomes=[outcome(b, event.id, "failed")]))
    page = await store.list_events(EventFilter(workspace_id=WS, status="failed"), 10, None)
    (settled,) = page.records
    assert (settled.completed_count, settled.failed_count) == (1, 1)
    assert [x.status_code for x in await store.attempts_of(b)] == [500]
    # A stale outcome (the row is no longer under claim) changes nothing.
    await store.write(WriteBatch(outcomes=[outcome(a, event.id, "failed")]))
    states = {r.id: r.status for r in await store.rule_events_of([event.id])}
    assert states[a] == "completed"
    (still,) = (await store.list_events(EventFilter(workspace_id=WS), 10, None)).records
    assert (still.status, still.completed_count, still.failed_count) == ("failed", 1, 1)


async def test_listing_pages_newest_first_without_repeats(store: Store) -> None:
    events = await ingest(store, 25)
    seen, cursor = [], None
    while True:
        page = await store.list_events(EventFilter(workspace_id=WS), 10, cursor)
        seen += [e.id for e in page.records]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted((e.id for e in events), reverse=True)


async def test_time_bounds_are_id_bounds(store: Store) -> None:
    await ingest(store, 2, at_ms=NOW)
    late = await ingest(store, 3, at_ms=NOW + 60_000)
    f = EventFilter(after_id=uuid7_floor(NOW + 1))
    page = await store.list_events(f, 10, None)
    assert {e.id for e in page.records} == {e.id for e in late}


async def test_requeue_only_touches_settled_deliveries(store: Store) -> None:
    (event,) = await ingest(store, 1, rules=2)
    a, b = (c.rule_event_id for c in await store.claim_due(NOW, 10, NOW + 60_000, {}))
    await store.write(WriteBatch(outcomes=[outcome(a, event.id, "failed")]))
    assert await store.requeue([a, b], NOW + 1) == [a]  # b is still in flight
    (d,) = (await store.list_deliveries(DeliveryFilter(id=a), 1, None)).records
    assert (d.rule_event.status, d.rule_event.trigger) == ("pending", "manual")
    assert d.rule_event.schedule_attempts == 0
    assert d.rule_event.attempt_count == 1


async def test_bulk_requeue_walks_forward_in_batches(store: Store) -> None:
    events = await ingest(store, 30)
    claimed = await store.claim_due(NOW, 100, NOW + 60_000, {})
    by_event = {c.rule_event_id: c.event_id for c in claimed}
    await store.write(WriteBatch(outcomes=[outcome(r, e, "failed") for r, e in by_event.items()]))
    total, f = 0, DeliveryFilter(connection_id="c1")
    while True:
        count, last = await store.requeue_failed(f, NOW + 1, 7)
        total += count
        if count < 7 or last is None:
            break
        f = DeliveryFilter(connection_id="c1", after_id=last + "0")
    assert total == len(events)
    assert await store.count_rule_events("failed") == 0


async def test_disabling_a_connection_dead_letters_its_queue(store: Store) -> None:
    await ingest(store, 4, connection="gone")
    await ingest(store, 1, connection="fine")
    await store.disable_connections({"gone": "endpoint_gone"}, NOW)
    assert await store.count_rule_events("failed") == 4
    assert await store.count_rule_events("pending") == 1


async def test_retention_keeps_what_is_still_owed(store: Store) -> None:
    (done,) = await ingest(store, 1)
    owed = await ingest(store, 1)
    (claimed,) = [c for c in await store.claim_due(NOW, 10, NOW + 1, {}) if c.event_id == done.id]
    await store.write(WriteBatch(outcomes=[outcome(claimed.rule_event_id, done.id, "completed")]))
    await store.release_expired(NOW + 1)
    assert await store.purge_history(NOW + 1, 100) == 1
    assert await store.get_event(done.id) is None
    assert await store.get_event(owed[0].id) is not None


async def test_idempotency_answers_round_trip_and_expire(store: Store) -> None:
    record = IdempotencyRecord(
        workspace_id=WS, key="k", request_digest=b"d", status=201, body=b"{}", created_at_ms=NOW
    )
    await store.write(WriteBatch(idempotency=[record]))
    assert await store.get_idempotency(WS, "k") == record
    assert await store.purge_idempotency(NOW + 1) == 1
    assert await store.get_idempotency(WS, "k") is None


async def test_the_first_meta_value_wins(store: Store) -> None:
    assert await store.claim_meta("org_id", "first") == "first"
    assert await store.claim_meta("org_id", "second") == "first"


async def test_idempotency_reservations_hold_until_answered_or_stale(store: Store) -> None:
    def mine(at_ms: int, digest: bytes = b"d") -> IdempotencyRecord:
        return IdempotencyRecord(
            workspace_id=WS, key="k", request_digest=digest, status=0, body=b"", created_at_ms=at_ms
        )

    assert await store.reserve_idempotency(mine(NOW), NOW - 86_400_000, NOW - 30_000) is None
    held = await store.reserve_idempotency(mine(NOW + 1, b"e"), NOW - 86_400_000, NOW - 30_000)
    assert held is not None
    assert (held.status, held.request_digest) == (0, b"d")
    # The reserving process died: after the stale limit another request takes over.
    assert await store.reserve_idempotency(mine(NOW + 40_000), NOW, NOW + 10_000) is None
    answer = IdempotencyRecord(
        workspace_id=WS, key="k", request_digest=b"d", status=201, body=b"{}", created_at_ms=NOW
    )
    await store.write(WriteBatch(idempotency=[answer]))
    again = await store.reserve_idempotency(mine(NOW + 50_000), NOW - 1, NOW + 60_000)
    assert again == answer
    await store.drop_reservation(WS, "k", NOW)  # only reservations are dropped, not answers
    assert await store.get_idempotency(WS, "k") == answer
    # A failed request drops its own reservation, not one made after it went stale.
    await store.purge_idempotency(NOW + 100_000)
    assert await store.reserve_idempotency(mine(NOW + 60_000), NOW, NOW) is None
    await store.drop_reservation(WS, "k", NOW + 40_000)
    assert await store.get_idempotency(WS, "k") is not None
    await store.drop_reservation(WS, "k", NOW + 60_000)
    assert await store.get_idempotency(WS, "k") is None


async def test_token_buckets_refill_at_their_rate(store: Store) -> None:
    rate_per_ms, burst = 0.01, 5.0  # 10 per second
    assert await store.take_tokens("key", 5, rate_per_ms, burst, NOW) == 0
    assert await store.take_tokens("key", 1, rate_per_ms, burst, NOW) == pytest.approx(1.0)
    assert await store.take_tokens("key", 1, rate_per_ms, burst, NOW + 100) == 0
    assert await store.take_tokens("key", 2, rate_per_ms, burst, NOW + 200) == pytest.approx(1.0)
    assert await store.take_tokens("other", 5, rate_per_ms, burst, NOW) == 0


async def test_an_outcome_and_a_disable_commit_together(store: Store) -> None:
    await ingest(store, 3)
    (claimed,) = await store.claim_due(NOW, 1, NOW + 60_000, {})
    gone = outcome(claimed.rule_event_id, claimed.event_id, "failed")
    await store.write(WriteBatch(outcomes=[gone], disable_connections={"c1": "gone"}, now_ms=NOW))
    assert await store.count_rule_events("failed") == 3
    assert await store.count_rule_events("pending") == 0
    assert [a.status_code for a in await store.attempts_of(claimed.rule_event_id)] == [500]
