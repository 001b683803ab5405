"""At least once across crashes and shutdowns, with real gateway processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Receiver
from tests.e2e.gateway_process import GatewayProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    proc = GatewayProcess(tmp_path / "data")
    yield proc
    proc.stop()


async def emit_many(gateway: GatewayProcess, key: str, count: int) -> set[str]:
    """Emit `count` events concurrently; the ids of those answered 201."""
    accepted: set[str] = set()
    sem = asyncio.Semaphore(20)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        async with sem:
            try:
                async with session.post(
                    gateway.base + "/api/v1/events",
                    json={"event": "order.created", "payload": {"i": i}},
                    headers={"X-Meshes-Publishable-Key": key},
                ) as resp:
                    if resp.status == 201:
                        accepted.add((await resp.json())["event"]["id"])
            except aiohttp.ClientError:
                pass  # the process died under us: not accepted, not owed

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, i) for i in range(count)))
    return accepted


def delivered_ids(receiver: Receiver) -> set[str]:
    return {json.loads(r.body)["uuid"] for r in receiver.requests}


async def wait_delivered(receiver: Receiver, ids: set[str], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s), receiver._arrived:
        await receiver._arrived.wait_for(lambda: ids <= delivered_ids(receiver))


async def test_kill_9_mid_delivery_loses_nothing(
    gateway: GatewayProcess, receiver: Receiver
) -> None:
    receiver.delay_s = 0.3  # slow: deliveries are in flight when the process dies
    await gateway.start()
    key = await gateway.setup_route(receiver.url())

    accepted = await emit_many(gateway, key, 300)
    assert len(accepted) == 300
    await receiver.wait_for(20)
    gateway.kill()
    before_restart = delivered_ids(receiver)
    assert len(before_restart) < len(accepted), "the kill came too late to test anything"

    receiver.delay_s = 0.0
    await gateway.start()
    await wait_delivered(receiver, accepted, timeout_s=60)
    # Duplicates are bounded by what was in flight when the process died.
    duplicates = len(receiver.requests) - len(delivered_ids(receiver))
    assert duplicates <= 32 + 256


async def test_sigterm_exits_promptly_and_releases_in_flight(
    gateway: GatewayProcess, receiver: Receiver
) -> None:
    receiver.delay_s = 1.0
    await gateway.start()
    key = await gateway.setup_route(receiver.url())
    accepted = await emit_many(gateway, key, 100)
    await receiver.wait_for(5)
    took_s = await gateway.terminate(timeout_s=20)
    # In-flight sends (1 s each) finish inside the grace period instead of being cut.
    assert took_s < 5
    assert gateway.proc is not None
    assert gateway.proc.returncode == 0

    receiver.delay_s = 0.0
    await gateway.start()
    await wait_delivered(receiver, accepted, timeout_s=60)
