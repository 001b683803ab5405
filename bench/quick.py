"""Quick benchmark: ingest (single POSTs), bulk, and emit->receive latency at a low rate.

The gateway, the receiver and this load generator are three processes on
loopback; where `taskset` exists the gateway gets core 0 and the others core 1.
Prints one JSON object per scenario. Not part of `make test`.

    python -m bench.quick [--seconds 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import unused_port

ACCESS = "mk_benchAccessKey000000000000"
SECRET = "b" * 43
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{ACCESS}:{SECRET}".encode()).decode()}


def _pinned(core: int, argv: list[str]) -> list[str]:
    return (["taskset", "-c", str(core)] if shutil.which("taskset") else []) + argv


def start_gateway(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MESHES_DATA_DIR": str(data_dir),
        "MESHES_PORT": str(port),
        "MESHES_ACCESS_KEY": ACCESS,
        "MESHES_SECRET_KEY": SECRET,
        "MESHES_ALLOW_HTTP": "1",
        "MESHES_ALLOW_NETWORKS": "127.0.0.0/8",
        "MESHES_LOG_LEVEL": "warning",
        "MESHES_INGEST_RATE": "0",  # the load generator is one key: no per-key limit
    }
    argv = [sys.executable, "-m", "meshes_gateway", "serve"]
    return subprocess.Popen(_pinned(0, argv), env=env)


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(_pinned(1, [sys.executable, "-m", "bench.receiver", str(port)]))


async def wait_up(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with session.get(url) as resp:
                if resp.status in (200, 404):
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(url)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def setup(session: aiohttp.ClientSession, base: str, hook: str | None) -> str:
    async with session.post(
        f"{base}/api/v1/workspaces", json={"name": f"b{time.time_ns()}"}, headers=AUTH
    ) as resp:
        ws = (await resp.json())["workspace"]
    if hook is not None:
        async with session.post(
            f"{base}/api/v1/connections",
            json={
                "workspace": ws["id"],
                "type": "webhook",
                "name": "r",
                "metadata": {"url": hook, "skip_test": True},
            },
            headers=AUTH,
        ) as resp:
            conn = (await resp.json())["connection"]
        async with session.post(
            f"{base}/api/v1/rules",
            json={
                "workspace": ws["id"],
                "connection": conn["id"],
                "event": "bench.*",
                "metadata": {"action": "send_webhook"},
            },
            headers=AUTH,
        ) as resp:
            assert resp.status == 201
    return str(ws["publishable_key"]["public_key"])


async def closed_loop(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    body_of: Any,
    seconds: float,
    concurrency: int,
    per_request: int,
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    done = {"requests": 0, "errors": 0}
    headers = {"X-Meshes-Publishable-Key": key, "Content-Type": "application/json"}

    async def worker() -> None:
        while time.monotonic() < deadline:
            async with session.post(url, data=body_of(), headers=headers) as resp:
                await resp.read()
                done["requests" if resp.status in (201, 207) else "errors"] += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {
        "events_per_s": round(done["requests"] * per_request / elapsed),
        "requests": done["requests"],
        "errors": done["errors"],
        "seconds": round(elapsed, 2),
    }


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="meshes-bench-"))
    gw_port, rx_port = unused_port(), unused_port()
    gateway = start_gateway(data_dir, gw_port)
    receiver = start_receiver(rx_port)
    base = f"http://127.0.0.1:{gw_port}"
    hook = f"http://127.0.0.1:{rx_port}/hook"
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_up(session, f"{base}/readyz")
            await wait_up(session, f"http://127.0.0.1:{rx_port}/stats")
            unrouted = await setup(session, base, None)
            single = json.dumps({"event": "bench.single", "payload": {"n": 1}}).encode()
            result = await closed_loop(
                session,
                f"{base}/api/v1/events",
                unrouted,
                lambda: single,
                args.seconds,
                args.concurrency,
                1,
            )
            print(json.dumps({"scenario": "ingest", **result}), flush=True)

            bulk = json.dumps(
                [{"event": "bench.bulk", "payload": {"n": i}} for i in range(100)]
            ).encode()
            result = await closed_loop(
                session, f"{base}/api/v1/events/bulk", unrouted, lambda: bulk, args.seconds, 4, 100
            )
            print(json.dumps({"scenario": "bulk", **result}), flush=True)

            routed = await setup(session, base, hook)
            interval = 1 / args.rate
            count = int(args.rate * args.seconds)
            headers = {"X-Meshes-Publishable-Key": routed}
            started = time.monotonic()
            for i in range(count):
                await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
                payload = {"event": "bench.latency", "payload": {"t_ns": time.time_ns()}}
                async with session.post(f"{base}/api/v1/events", json=payload, headers=headers):
                    pass
            await asyncio.sleep(1.0)
            async with session.get(f"http://127.0.0.1:{rx_port}/stats") as resp:
                stats = await resp.json()
            lat = sorted(stats["latencies_ms"])
            q = statistics.quantiles(lat, n=100)
            print(
                json.dumps(
                    {
                        "scenario": "latency",
                        "rate_per_s": args.rate,
                        "delivered": stats["count"],
                        "sent": count,
                        "p50_ms": round(q[49], 2),
                        "p95_ms": round(q[94], 2),
                        "p99_ms": round(q[98], 2),
                        "gateway_peak_rss_mb": round(peak_rss_mb(gateway.pid), 1),
                    }
                ),
                flush=True,
            )
    finally:
        for proc in (gateway, receiver):
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=50.0, help="events/s in the latency run")
    asyncio.run(main(parser.parse_args()))
