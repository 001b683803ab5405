"""Shared fixtures: a real gateway app on loopback, real receivers, real SQLite files."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from meshes_gateway.api.state import GATEWAY, Gateway
from meshes_gateway.app import create_app
from meshes_gateway.clock import Clock, ManualClock
from meshes_gateway.config import Settings
from tests.pg import drop_schemas, require_server

ACCESS_KEY = "mk_testAccessKey0123456789ab"
SECRET_KEY = "s" * 43
# `MESHES_TEST_BACKEND=postgres` runs the in-process gateways over PostgreSQL
# (a fresh schema each, dropped at the end of the session): `make test` runs
# the integration suite once per backend.
ON_POSTGRES = os.environ.get("MESHES_TEST_BACKEND") == "postgres"
_SCHEMAS = f"it_{secrets.token_hex(4)}_"
_KEY = Fernet.generate_key().decode()


def _postgres_settings() -> dict[str, Any]:
    url = require_server()
    schema = _SCHEMAS + secrets.token_hex(4)
    return {
        "database_url": f"{url}{'&' if '?' in url else '?'}schema={schema}",
        "encryption_key": _KEY,
    }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        skip = pytest.mark.skip(reason="checks the SQLite file itself")
        for item in items:
            if "sqlite_only" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _drop_test_schemas() -> Iterator[None]:
    yield
    if ON_POSTGRES:
        asyncio.run(drop_schemas(_SCHEMAS))


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "allow_http": True,
        "allow_networks": ("127.0.0.0/8",),
        "retry_schedule_s": (0.05, 0.05, 0.05),
        "poll_interval_s": 0.05,
        "sqlite_synchronous": "NORMAL",
        "shutdown_grace_s": 2.0,
    }
    if ON_POSTGRES:
        values.update(_postgres_settings())
    values.update(overrides)
    return Settings(**values)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real aiohttp webhook receiver on loopback that records what it gets.

    `responses` is consumed one status per request; when empty, 200 is answered.
    """

    server: TestServer
    requests: list[Received] = field(default_factory=list)
    responses: list[int] = field(default_factory=list)
    default_status: int = 200
    delay_s: float = 0.0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str = "/hook") -> str:
        return str(self.server.make_url(path))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        async with self._arrived:
            self.requests.append(
                Received(request.method, request.path, dict(request.headers), body)
            )
            self._arrived.notify_all()
        status = self.responses.pop(0) if self.responses else self.default_status
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        """Until at least `count` requests have arrived (an event, not a sleep)."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return self.requests


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    servers: list[TestServer] = []

    async def make() -> Receiver:
        app = web.Application()
        server = TestServer(app, host="127.0.0.1")
        receiver = Receiver(server)
        app.router.add_route("*", "/{tail:.*}", receiver.handle)
        await server.start_server()
        servers.append(server)
        return receiver

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def receiver(receiver_factory: Callable[[], Awaitable[Receiver]]) -> Receiver:
    return await receiver_factory()


class Api:
    """A management and ingest client against an in-process gateway."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client
        token = base64.b64encode(f"{ACCESS_KEY}:{SECRET_KEY}".encode()).decode()
        self.auth = {"Authorization": f"Basic {token}"}

    @property
    def gateway(self) -> Gateway:
        return self.client.app[GATEWAY]  # type: ignore[index]

    async def call(
        self, method: str, path: str, body: Any = None, expect: int | None = None, **kw: Any
    ) -> Any:
        headers = dict(self.auth) | kw.pop("headers", {})
        resp = await self.client.request(method, path, json=body, headers=headers, **kw)
        data = await resp.json(content_type=None)
        if expect is not None:
            assert resp.status == expect, (resp.status, data)
        return data

    async def emit(
        self, key: str, body: Any, path: str = "/api/v1/events", **headers: str
    ) -> tuple[int, Any]:
        resp = await self.client.post(
            path, json=body, headers={"X-Meshes-Publishable-Key": key, **headers}
        )
        return resp.status, await resp.json(content_type=None)

    async def setup_route(
        self, url: str, event: str = "invoice.*", **metadata: Any
    ) -> tuple[str, str, str, str]:
        """A workspace, a webhook connection to `url` and a rule: (workspace, key, conn, secret)."""
        ws = (
            await self.call(
                "POST", "/api/v1/workspaces", {"name": f"ws-{time.monotonic_ns()}"}, 201
            )
        )["workspace"]
        conn = await self.add_connection(ws["id"], url, event, **metadata)
        return (
            ws["id"],
            ws["publishable_key"]["public_key"],
            conn["id"],
            conn["metadata"]["signing_secret"],
        )

    async def add_connection(
        self, workspace: str, url: str, event: str = "invoice.*", **metadata: Any
    ) -> Any:
        conn = (
            await self.call(
                "POST",
                "/api/v1/connections",
                {
                    "workspace": workspace,
                    "type": "webhook",
                    "name": "receiver",
                    "metadata": {"url": url, "skip_test": True, **metadata},
                },
                201,
            )
        )["connection"]
        await self.call(
            "POST",
            "/api/v1/rules",
            {
                "workspace": workspace,
                "connection": conn["id"],
                "event": event,
                "metadata": {"action": "send_webhook"},
            },
            201,
        )
        return conn

    async def count(self, status: str) -> int:
        """Deliveries in a status, read straight from the store."""
        return await self.gateway.store.count_rule_events(status)

    async def until(self, check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            await asyncio.sleep(0.02)

    async def event_when(
        self, event_id: str, done: Callable[[Any], bool], timeout_s: float = 10.0
    ) -> Any:
        """The event's history once `done` holds for it (short polls with a deadline)."""
        deadline = time.monotonic() + timeout_s
        while True:
            event = await self.call("GET", f"/api/v1/events/{event_id}", expect=200)
            if done(event):
                return event
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached: {event}")
            await asyncio.sleep(0.02)


@pytest.fixture
def clock() -> Clock | None:
    """The gateway's clock; tests that drive time override this with a ManualClock."""
    return None


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def api(settings: Settings, clock: Clock | None) -> AsyncIterator[Api]:
    app = create_app(settings, clock=clock)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Api(client)
    finally:
        await client.close()


__all__ = ["Api", "ManualClock", "Receiver", "make_settings"]
