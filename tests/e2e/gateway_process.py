"""A real gateway process on loopback, for crash and shutdown tests."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import unused_port

from tests.conftest import ACCESS_KEY, SECRET_KEY


class GatewayProcess:
    """`python -m meshes_gateway serve` on a free port over a given data dir."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = unused_port()
        self.env = {
            **os.environ,
            "MESHES_DATA_DIR": str(data_dir),
            "MESHES_PORT": str(self.port),
            "MESHES_HOST": "127.0.0.1",
            "MESHES_ACCESS_KEY": ACCESS_KEY,
            "MESHES_SECRET_KEY": SECRET_KEY,
            "MESHES_ALLOW_HTTP": "1",
            "MESHES_ALLOW_NETWORKS": "127.0.0.0/8",
            "MESHES_RETRY_SCHEDULE": "0.2,0.2,0.2,0.2,0.2",
            "MESHES_LOG_LEVEL": "warning",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"
        token = base64.b64encode(f"{ACCESS_KEY}:{SECRET_KEY}".encode()).decode()
        self.auth = {"Authorization": f"Basic {token}"}

    async def start(self, timeout_s: float = 15.0) -> None:
        with (self.data_dir.parent / f"gateway-{self.port}.log").open("ab") as log:
            # Popen only forks; waiting is done without blocking (see terminate).
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "meshes_gateway", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited with {self.proc.returncode}")
                try:
                    async with session.get(f"{self.base}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError("gateway did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    async def terminate(self, timeout_s: float) -> float:
        """SIGTERM, then the seconds it took to exit.

        Waits without blocking the event loop: the test's receiver runs on it
        and must keep answering the deliveries the gateway is finishing.
        """
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError("gateway did not exit after SIGTERM")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def call(self, session: aiohttp.ClientSession, method: str, path: str, body: Any) -> Any:
        async with session.request(method, self.base + path, json=body, headers=self.auth) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json()

    async def setup_route(self, url: str) -> str:
        """A workspace with one webhook connection and a `*` rule; returns its publishable key."""
        async with aiohttp.ClientSession() as s:
            ws = (await self.call(s, "POST", "/api/v1/workspaces", {"name": "crash"}))["workspace"]
            conn = await self.call(
                s,
                "POST",
                "/api/v1/connections",
                {
                    "workspace": ws["id"],
                    "type": "webhook",
                    "name": "slow",
                    "metadata": {"url": url, "skip_test": True},
                },
            )
            await self.call(
                s,
                "POST",
                "/api/v1/rules",
                {
                    "workspace": ws["id"],
                    "connection": conn["connection"]["id"],
                    "event": "*",
                    "metadata": {"action": "send_webhook"},
                },
            )
        return str(ws["publishable_key"]["public_key"])
