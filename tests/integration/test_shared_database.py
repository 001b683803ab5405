"""Two gateways on one PostgreSQL database behave as one: config, idempotency, rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from meshes_gateway.app import create_app
from tests.conftest import Api, Receiver, make_settings
from tests.pg import fresh_schema


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Api, Api]]:
    key = Fernet.generate_key().decode()
    async with fresh_schema() as url:
        apis = []
        for name in ("a", "b"):
            settings = make_settings(
                tmp_path / name,
                database_url=url,
                encryption_key=key,
                ingest_rate_per_s=1.0,
                ingest_burst=3.0,
            )
            client: TestClient[web.Request, web.Application] = TestClient(
                TestServer(create_app(settings), host="127.0.0.1")
            )
            await client.start_server()
            apis.append(Api(client))
        try:
            yield apis[0], apis[1]
        finally:
            for api in apis:
                await api.client.close()


async def test_configuration_made_on_one_replica_routes_on_the_other(
    pair: tuple[Api, Api], receiver: Receiver
) -> None:
    a, b = pair
    _, key, _, _ = await a.setup_route(receiver.url())
    status, body = await b.emit(key, {"event": "invoice.paid", "payload": {"n": 1}})
    assert status == 201, body
    await receiver.wait_for(1)
    # A rule deleted through `a` stops routing on `b` (its cache is told by NOTIFY).
    rules = await a.call("GET", "/api/v1/rules", expect=200)
    await a.call("DELETE", f"/api/v1/rules/{rules['records'][0]['id']}", expect=200)

    async def unrouted() -> bool:
        status, body = await b.emit(key, {"event": "invoice.paid", "payload": {}})
        event = await b.call("GET", f"/api/v1/events/{body['event']['id']}", expect=200)
        return status == 201 and event["total_rules"] == 0

    await b.until(unrouted, timeout_s=5)


async def test_an_idempotency_key_holds_across_replicas(
    pair: tuple[Api, Api], receiver: Receiver
) -> None:
    a, b = pair
    _, key, _, _ = await a.setup_route(receiver.url())
    body = {"event": "invoice.paid", "payload": {"n": 1}}
    answers = await asyncio.gather(
        *(api.emit(key, body, **{"Idempotency-Key": "once"}) for api in (a, b, a, b))
    )
    assert {status for status, _ in answers} == {201}
    assert len({answer["event"]["id"] for _, answer in answers}) == 1
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1
    status, answer = await b.emit(key, {**body, "payload": {"n": 2}}, **{"Idempotency-Key": "once"})
    assert status == 422, answer


async def test_a_rate_limit_holds_across_replicas(
    pair: tuple[Api, Api], receiver: Receiver
) -> None:
    a, b = pair
    _, key, _, _ = await a.setup_route(receiver.url())
    body = {"event": "invoice.paid", "payload": {}}
    statuses = [(await api.emit(key, body))[0] for api in (a, b, a, b)]
    assert statuses == [201, 201, 201, 429]  # a burst of 3, shared


async def test_a_failed_request_frees_its_key_for_a_retry_on_another_replica(
    pair: tuple[Api, Api], receiver: Receiver
) -> None:
    a, b = pair
    _, key, _, _ = await a.setup_route(receiver.url())
    status, _ = await a.emit(key, {"event": "", "payload": {}}, **{"Idempotency-Key": "k2"})
    assert status == 422

    async def retried() -> bool:
        status, _ = await b.emit(
            key, {"event": "invoice.paid", "payload": {}}, **{"Idempotency-Key": "k2"}
        )
        return status == 201

    await b.until(retried, timeout_s=2)  # not after the 30 s a dead replica's hold lasts


async def test_lost_database_connections_come_back(
    pair: tuple[Api, Api], receiver: Receiver
) -> None:
    import asyncpg

    a, _ = pair
    _, key, _, _ = await a.setup_route(receiver.url())
    url = a.gateway.settings.database_url.split("?")[0]
    conn = await asyncpg.connect(url)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'meshes-gateway' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    assert killed >= 2
    statuses: list[int] = []

    async def listed() -> bool:
        resp = await a.client.get("/api/v1/workspaces", headers=a.auth)
        statuses.append(resp.status)
        return resp.status == 200

    await a.until(listed, timeout_s=10)  # reads on a dropped connection: 503, then 200

    async def accepted() -> bool:
        status, _ = await a.emit(key, {"event": "invoice.paid", "payload": {}})
        statuses.append(status)
        return status == 201

    await a.until(accepted, timeout_s=10)
    assert set(statuses) <= {200, 201, 503}  # "retry later", never a 500
    await receiver.wait_for(1)


async def test_a_key_held_elsewhere_too_long_is_a_409_to_retry(
    pair: tuple[Api, Api], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshes_gateway.api import idempotency
    from meshes_gateway.api.idempotency import request_digest
    from meshes_gateway.storage.records import IdempotencyRecord

    a, b = pair
    ws, key, _, _ = await a.setup_route(receiver.url())
    body = b'{"event": "invoice.paid", "payload": {}}'
    # Another replica reserved this key and has not answered (yet).
    held = IdempotencyRecord(
        workspace_id=ws,
        key="slow",
        request_digest=request_digest(body),
        status=0,
        body=b"",
        created_at_ms=a.gateway.clock.now_ms(),
    )
    assert await a.gateway.store.reserve_idempotency(held, 0, 0) is None
    monkeypatch.setattr(idempotency, "WAIT_S", 0.3)
    resp = await b.client.post(
        "/api/v1/events",
        data=body,
        headers={
            "X-Meshes-Publishable-Key": key,
            "Idempotency-Key": "slow",
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 409, await resp.text()
    assert resp.headers["Retry-After"] == "1"
    assert resp.content_type == "application/problem+json"
