"""What several gateway processes on one PostgreSQL database rely on from its Store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from meshes_gateway.storage.records import WriteBatch
from tests.contract.test_store import NOW, event_with, ingest
from tests.pg import fresh_schema


@pytest.fixture
async def replicas() -> AsyncIterator[list[object]]:
    from meshes_gateway.storage.postgres import PostgresStore

    async with fresh_schema() as url:
        stores = [PostgresStore(url) for _ in range(3)]
        # Opened together on an empty schema: exactly one of them migrates it.
        await asyncio.gather(*(store.open() for store in stores))
        try:
            yield list(stores)
        finally:
            for store in stores:
                await store.close()


async def test_replicas_claim_disjoint_sets(replicas: list[object]) -> None:
    a, b, c = replicas  # type: ignore[misc]
    await ingest(a, 300)
    batches = await asyncio.gather(
        *(s.claim_due(NOW, 40, NOW + 60_000, {}) for s in (a, b, c, a, b, c, a, b, c))
    )
    ids = [d.rule_event_id for batch in batches for d in batch]
    assert len(ids) == len(set(ids)) == 300


async def test_another_replica_takes_over_an_expired_lease(replicas: list[object]) -> None:
    a, b, _ = replicas  # type: ignore[misc]
    await ingest(a, 1)
    (first,) = await a.claim_due(NOW, 10, NOW + 1_000, {})
    assert await b.claim_due(NOW + 500, 10, NOW + 2_000, {}) == []
    assert await b.release_expired(NOW + 1_000) == 1
    (again,) = await b.claim_due(NOW + 1_000, 10, NOW + 61_000, {})
    assert again.rule_event_id == first.rule_event_id


async def test_one_leader_at_a_time_and_a_new_one_when_it_goes(replicas: list[object]) -> None:
    for store in replicas:
        await _control_ready(store)
    leaders = [await s.is_leader() for s in replicas]  # type: ignore[attr-defined]
    assert leaders.count(True) == 1
    leader = replicas[leaders.index(True)]
    await leader.close()  # type: ignore[attr-defined]
    rest = [s for s in replicas if s is not leader]
    assert [await s.is_leader() for s in rest].count(True) == 1  # type: ignore[attr-defined]


async def test_commits_wake_the_other_replicas(replicas: list[object]) -> None:
    a, b, c = replicas  # type: ignore[misc]
    woken = {"b": asyncio.Event(), "c": asyncio.Event()}
    config = asyncio.Event()
    b.subscribe(woken["b"].set, config.set)
    c.subscribe(woken["c"].set, lambda: None)
    for store in replicas:
        await _control_ready(store)
    for event in (*woken.values(), config):
        event.clear()
    event, deliveries = event_with(1)
    await a.write(WriteBatch(events=[event], rule_events=deliveries))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in woken.values())), 5)
    await a.disable_connections({"c1": "test"}, NOW)
    await asyncio.wait_for(config.wait(), 5)


async def _control_ready(store: object) -> None:
    for _ in range(200):
        if getattr(store, "_control", None) is not None:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("control connection did not come up")
