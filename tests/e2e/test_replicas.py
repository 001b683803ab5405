"""Three real gateway processes on one PostgreSQL database, one of them killed mid-burst."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.fernet import Fernet

from tests.conftest import Receiver
from tests.e2e.gateway_process import GatewayProcess
from tests.e2e.test_crash import delivered_ids, wait_delivered
from tests.pg import fresh_schema

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]
MAX_INFLIGHT = 32


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[list[GatewayProcess]]:
    async with fresh_schema() as url:
        env = {
            "MESHES_DATABASE_URL": url,
            "MESHES_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            # Short leases so the dead replica's deliveries come back within the test.
            "MESHES_REQUEST_TIMEOUT": "2",
            "MESHES_LEASE": "7",
            "MESHES_MAX_INFLIGHT": str(MAX_INFLIGHT),
            "MESHES_POLL_INTERVAL": "0.5",
            "MESHES_INGEST_RATE": "0",
        }
        procs = [GatewayProcess(tmp_path / f"replica{i}", **env) for i in range(3)]
        try:
            # The victim (replica 1) starts first and takes the leader's lock at its
            # first sweep, so killing it also tests that leadership (and with it
            # the lease sweep that brings its deliveries back) moves on.
            await procs[1].start()
            await until_a_leader(url)
            await asyncio.gather(procs[0].start(), procs[2].start())
            yield procs
        finally:
            for p in procs:
                p.stop()


async def until_a_leader(url: str) -> None:
    """Until some session holds an advisory lock on this database (the leader's)."""
    import asyncpg

    conn = await asyncpg.connect(url.split("?")[0])
    try:
        for _ in range(200):
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            if held:
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise TimeoutError("no replica became the leader")


async def emit_round_robin(
    procs: list[GatewayProcess], key: str, count: int, accepted: list[tuple[int, str]]
) -> None:
    """Emit `count` events spread over the replicas; record (replica, id) of each 201."""
    sem = asyncio.Semaphore(24)
    targets = itertools.cycle(range(len(procs)))

    async def one(session: aiohttp.ClientSession, i: int, replica: int) -> None:
        async with sem:
            try:
                async with session.post(
                    procs[replica].base + "/api/v1/events",
                    json={"event": "order.created", "payload": {"i": i}},
                    headers={"X-Meshes-Publishable-Key": key},
                ) as resp:
                    if resp.status == 201:
                        accepted.append((replica, (await resp.json())["event"]["id"]))
            except aiohttp.ClientError:
                pass  # that replica is dead: not accepted, so not owed

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, i, next(targets)) for i in range(count)))


async def test_kill_9_one_of_three_replicas_mid_burst(
    replicas: list[GatewayProcess], receiver: Receiver
) -> None:
    receiver.delay_s = 0.2  # deliveries are in flight on every replica when one dies
    key = await replicas[0].setup_route(receiver.url())
    accepted: list[tuple[int, str]] = []
    burst = asyncio.create_task(emit_round_robin(replicas, key, 900, accepted))
    await receiver.wait_for(60, timeout_s=30)
    victim = replicas[1]
    victim.kill()
    delivered_at_kill = delivered_ids(receiver)
    await burst

    by_replica = Counter(replica for replica, _ in accepted)
    assert by_replica[1] > 0, "the victim accepted nothing before it died"
    assert min(by_replica[0], by_replica[2]) > 0
    ids = {event_id for _, event_id in accepted}
    assert len(ids) == len(accepted)
    # Every accepted event arrives: the survivors take the dead replica's
    # leased deliveries over once the 7 s lease has run out.
    owed_by_victim = {event_id for r, event_id in accepted if r == 1} - delivered_at_kill
    assert owed_by_victim, "the kill came too late to test a take-over"
    await wait_delivered(receiver, ids, timeout_s=90)
    duplicates = len(receiver.requests) - len(delivered_ids(receiver))
    # At least once, not many times: only what the killed replica had in flight
    # (at most its sending slots) may arrive twice.
    assert duplicates <= MAX_INFLIGHT
