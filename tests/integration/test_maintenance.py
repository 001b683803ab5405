"""Retention and idempotency expiry, driven by the injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshes_gateway.clock import ManualClock
from meshes_gateway.config import Settings
from meshes_gateway.engine.maintenance import Maintenance
from tests.conftest import Api, Receiver, make_settings


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", retry_schedule_s=(3600.0,), poll_interval_s=3600.0)


async def test_old_settled_history_is_purged_but_owed_work_is_kept(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    _, key, _, _ = await api.setup_route(receiver.url())
    _, done = await api.emit(key, {"event": "invoice.paid", "payload": {}})
    await api.event_when(done["event"]["id"], lambda e: e["status"] == "completed")
    receiver.responses = [500]
    _, owed = await api.emit(key, {"event": "invoice.paid", "payload": {}})
    await api.event_when(owed["event"]["id"], lambda e: e["rule_events"][0]["attempt_count"] == 1)

    maintenance = Maintenance(
        api.gateway.store,
        clock,
        idempotency_ttl_s=86_400,
        retention_days=30,
        disable_after_s=100 * 86_400,  # not under test here
    )
    clock.advance(29 * 86_400)
    assert await maintenance.tick() == 0
    clock.advance(2 * 86_400)
    assert await maintenance.tick() == 1
    await api.call("GET", f"/api/v1/events/{done['event']['id']}", expect=404)
    kept = await api.call("GET", f"/api/v1/events/{owed['event']['id']}", expect=200)
    assert kept["rule_events"][0]["status"] == "pending"


async def test_idempotency_key_expires_after_its_lifetime(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    _, key, _, _ = await api.setup_route(receiver.url())
    body = {"event": "invoice.paid", "payload": {}}
    _, first = await api.emit(key, body, **{"Idempotency-Key": "k"})
    clock.advance(23 * 3600)
    _, again = await api.emit(key, body, **{"Idempotency-Key": "k"})
    assert again == first
    clock.advance(2 * 3600)
    _, fresh = await api.emit(key, body, **{"Idempotency-Key": "k"})
    assert fresh["event"]["id"] != first["event"]["id"]
