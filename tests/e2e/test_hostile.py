"""Hostile receivers (hang, drip, 100 MB, gzip bomb) against a real gateway process."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.e2e.gateway_process import GatewayProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
TIMEOUT_S = 2


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


class Hostile:
    """One aiohttp server with a route per misbehaviour, and a healthy route."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.healthy_latency_ms: list[float] = []
        self.bomb = gzip.compress(b"\0" * (100 * 2**20), compresslevel=9)
        app = web.Application()
        app.router.add_post("/hang", self.hang)
        app.router.add_post("/drip", self.drip)
        app.router.add_post("/huge", self.huge)
        app.router.add_post("/bomb", self.gzip_bomb)
        app.router.add_post("/ok", self.ok)
        self.server = TestServer(app, host="127.0.0.1")

    async def hang(self, request: web.Request) -> web.Response:
        await request.read()
        await self._wait(60)
        return web.Response(text="late")

    async def drip(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(60):
            await resp.write(b".")
            if await self._wait(1):
                break
        return resp

    async def huge(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse()
        resp.content_length = 100 * 2**20
        await resp.prepare(request)
        chunk = b"x" * 2**16
        try:
            for _ in range(100 * 2**20 // len(chunk)):
                await resp.write(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the gateway hung up after its excerpt: expected
        return resp

    async def gzip_bomb(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=self.bomb, headers={"Content-Encoding": "gzip"})

    async def ok(self, request: web.Request) -> web.Response:
        body = await request.json()
        sent = body["payload"]["t"]
        self.healthy_latency_ms.append((time.time() - sent) * 1000)
        return web.Response(text="ok")

    async def _wait(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    h = Hostile()
    await h.server.start_server()
    yield h
    h.stop.set()
    await h.server.close()


async def test_hostile_receivers_cannot_hurt_the_gateway_or_its_neighbours(
    tmp_path: Path, hostile: Hostile
) -> None:
    gateway = GatewayProcess(
        tmp_path / "data",
        MESHES_REQUEST_TIMEOUT=str(TIMEOUT_S),
        MESHES_CONNECT_TIMEOUT="1",
        MESHES_PER_CONNECTION_INFLIGHT="8",
        MESHES_RETRY_SCHEDULE="3600",
    )
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as s:
            ws = (await gateway.call(s, "POST", "/api/v1/workspaces", {"name": "h"}))["workspace"]
            key = ws["publishable_key"]["public_key"]
            for name in ("hang", "drip", "huge", "bomb", "ok"):
                conn = await gateway.call(
                    s,
                    "POST",
                    "/api/v1/connections",
                    {
                        "workspace": ws["id"],
                        "type": "webhook",
                        "name": name,
                        "metadata": {
                            "url": str(hostile.server.make_url(f"/{name}")),
                            "skip_test": True,
                        },
                    },
                )
                await gateway.call(
                    s,
                    "POST",
                    "/api/v1/rules",
                    {
                        "workspace": ws["id"],
                        "connection": conn["connection"]["id"],
                        "event": f"{name}.*",
                        "metadata": {"action": "send_webhook"},
                    },
                )
            assert gateway.proc is not None
            pid = gateway.proc.pid
            rss_before_kb = rss_kb(pid, "VmRSS")

            headers = {"X-Meshes-Publishable-Key": key}
            for name in ("hang", "drip", "huge", "bomb"):
                batch = [{"event": f"{name}.x", "payload": {"i": i}} for i in range(16)]
                async with s.post(
                    f"{gateway.base}/api/v1/events/bulk", json=batch, headers=headers
                ) as resp:
                    assert resp.status == 201
            # The healthy endpoint keeps its normal latency meanwhile.
            for _ in range(40):
                body = {"event": "ok.x", "payload": {"t": time.time()}}
                async with s.post(f"{gateway.base}/api/v1/events", json=body, headers=headers):
                    pass
                await asyncio.sleep(0.05)
            await asyncio.sleep(3 * TIMEOUT_S)

            lat = sorted(hostile.healthy_latency_ms)
            assert len(lat) == 40
            assert lat[len(lat) // 2] < 100, lat
            growth_mb = (rss_kb(pid, "VmHWM") - rss_before_kb) / 1024
            assert growth_mb < 50, growth_mb

            async with s.get(
                f"{gateway.base}/api/v1/deliveries?limit=100", headers=gateway.auth
            ) as resp:
                deliveries = (await resp.json())["records"]
            by_name: dict[str, list[dict[str, object]]] = {}
            for d in deliveries:
                by_name.setdefault(str(d["event"]).split(".")[0], []).append(d)
            for name in ("hang", "drip", "huge", "bomb"):
                one = by_name[name][0]
                async with s.get(
                    f"{gateway.base}/api/v1/deliveries/{one['id']}", headers=gateway.auth
                ) as resp:
                    attempt = (await resp.json())["attempts"][0]
                assert attempt["duration_ms"] <= (TIMEOUT_S + 1) * 1000, (name, attempt)
                if name in ("hang", "drip"):
                    assert attempt["error"] == "timeout", (name, attempt)
                else:  # answered 200 at once: delivered, body read only up to the cap
                    assert attempt["status_code"] == 200, (name, attempt)
                    assert len(attempt["response_excerpt"].encode("utf-8", "replace")) <= 4096 * 3
    finally:
        gateway.stop()
