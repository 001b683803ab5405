"""The benchmark harness (`make bench`): one JSON object per scenario on stdout.

Each scenario starts the gateway as its own process on a fresh data dir, a
loopback receiver in a second process and a load generator in a third. Where
`taskset` exists the gateway gets core 0 and everything else core 1. The
ceilings are measured in the same run: a bare aiohttp server answering the
same POST (ingest) and a bare aiohttp client sending to the same receiver
(delivery). Closed-loop floods use `wrk` when installed, else the Python
load generator (`bench/loadgen.py`); the JSON says which.

    python -m bench.run [--smoke] [--only ingest,bulk,...] [--seconds S]
        [--database-url postgresql://... --replicas N]

With `--database-url` the gateway runs over PostgreSQL (a fresh schema per
scenario, dropped afterwards) as `--replicas` processes, spread over the cores
(replica i on core i mod 2); load is split evenly between them, as a load
balancer would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import unused_port

ACCESS = "mk_benchAccessKey000000000000"
SECRET = "b" * 43
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{ACCESS}:{SECRET}".encode()).decode()}
SCENARIOS = ("ingest", "bulk", "e2e", "drain", "latency", "fanout")
TARGETS = {
    "ingest": ("ratio", 0.40),
    "bulk": ("events_per_s", 50_000),
    "e2e": ("deliveries_per_s", 4_000),
    "drain": ("ratio", 0.50),
    "latency": ("p99_ms", 25.0),
    "fanout": ("ratio", 0.60),
}
SINGLE = b'{"event":"bench.single","payload":{"n":1,"text":"hello"}}'
# Set from the command line: where the gateway keeps its data, and how many replicas run.
BACKEND: dict[str, Any] = {"database_url": "", "replicas": 1}


def pinned(core: int, argv: list[str]) -> list[str]:
    return (["taskset", "-c", str(core)] if shutil.which("taskset") else []) + argv


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class Gateway:
    """One gateway, or several replicas over one PostgreSQL database."""

    procs: list[asyncio.subprocess.Process]
    bases: list[str]
    data_dir: Path
    database_url: str

    @property
    def base(self) -> str:
        return self.bases[0]

    def urls(self, path: str) -> list[str]:
        return [base + path for base in self.bases]

    def rss_mb(self) -> float:
        return round(max(status_kb(p.pid, "VmRSS") for p in self.procs) / 1024, 1)

    def peak_rss_mb(self) -> float:
        """The largest replica's high-water mark."""
        return round(max(status_kb(p.pid, "VmHWM") for p in self.procs) / 1024, 1)

    async def backlog(self) -> int:
        """Deliveries not yet settled, read straight from the database."""
        query = "SELECT count(*) FROM rule_events WHERE status IN ('pending', 'processing')"
        if self.database_url:
            return int(await _pg_fetchval(self.database_url, query))
        with sqlite3.connect(f"file:{self.data_dir / 'meshes.db'}?mode=ro", uri=True) as db:
            return int(db.execute(query).fetchone()[0])


async def _pg_fetchval(url: str, query: str) -> Any:
    import asyncpg

    from meshes_gateway.storage.postgres.store import split_url

    dsn, schema = split_url(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def spawn(
    core: int, *argv: str, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *pinned(core, list(argv)),
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 25)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(400):
            try:
                async with s.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.025)
    raise TimeoutError(url)


@asynccontextmanager
async def gateway(**env: str) -> AsyncIterator[Gateway]:
    data_dir = Path(tempfile.mkdtemp(prefix="meshes-bench-"))
    shared: dict[str, str] = {}
    url = ""
    if BACKEND["database_url"]:
        base_url = BACKEND["database_url"]
        url = f"{base_url}{'&' if '?' in base_url else '?'}schema=bench_{secrets.token_hex(4)}"
        from cryptography.fernet import Fernet

        shared = {
            "MESHES_DATABASE_URL": url,
            "MESHES_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        }
    procs, bases = [], []
    for i in range(BACKEND["replicas"]):
        port = unused_port()
        procs.append(
            await spawn(
                i % 2,
                sys.executable,
                "-m",
                "meshes_gateway",
                "serve",
                env={
                    "MESHES_DATA_DIR": str(data_dir / f"replica{i}"),
                    "MESHES_PORT": str(port),
                    "MESHES_ACCESS_KEY": ACCESS,
                    "MESHES_SECRET_KEY": SECRET,
                    "MESHES_ALLOW_HTTP": "1",
                    "MESHES_ALLOW_NETWORKS": "127.0.0.0/8",
                    "MESHES_LOG_LEVEL": "warning",
                    "MESHES_INGEST_RATE": "0",  # one key drives all the load
                    **shared,
                    **env,
                },
            )
        )
        bases.append(f"http://127.0.0.1:{port}")
    try:
        await asyncio.gather(*(wait_up(f"{base}/readyz") for base in bases))
        yield Gateway(procs, bases, data_dir / "replica0", url)
    finally:
        await asyncio.gather(*(stop(proc) for proc in procs))
        shutil.rmtree(data_dir, ignore_errors=True)
        if url:
            await _pg_fetchval(url, f"DROP SCHEMA {url.rsplit('schema=', 1)[1]} CASCADE")


@asynccontextmanager
async def receiver() -> AsyncIterator[str]:
    port = unused_port()
    proc = await spawn(1, sys.executable, "-m", "bench.receiver", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_up(f"{base}/stats")
        yield base
    finally:
        await stop(proc)


async def call(method: str, url: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body, headers=AUTH) as r:
        data = await r.json(content_type=None)
        if r.status >= 300:
            raise RuntimeError(f"{method} {url}: {r.status} {data}")
        return data


async def workspace(gw: Gateway) -> tuple[str, str]:
    ws = (await call("POST", f"{gw.base}/api/v1/workspaces", {"name": f"b{time.time_ns()}"}))[
        "workspace"
    ]
    return ws["id"], ws["publishable_key"]["public_key"]


async def route(gw: Gateway, ws: str, url: str, event: str = "*") -> str:
    conn = await call(
        "POST",
        f"{gw.base}/api/v1/connections",
        {
            "workspace": ws,
            "type": "webhook",
            "name": "r",
            "metadata": {"url": url, "skip_test": True},
        },
    )
    cid = conn["connection"]["id"]
    await call(
        "POST",
        f"{gw.base}/api/v1/rules",
        {
            "workspace": ws,
            "connection": cid,
            "event": event,
            "metadata": {"action": "send_webhook"},
        },
    )
    return str(cid)


async def post_bulks(gw: Gateway, key: str, event: str, total: int) -> None:
    """`total` events in bulk requests of 100, one after the other."""
    body = [{"event": event, "payload": {"n": i}} for i in range(100)]
    async with aiohttp.ClientSession() as s:
        for _ in range(max(1, total // 100)):
            async with s.post(
                f"{gw.base}/api/v1/events/bulk",
                json=body,
                headers={"X-Meshes-Publishable-Key": key},
            ) as r:
                assert r.status == 201, await r.text()


async def stats(rx: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{rx}/stats") as r:
        return dict(await r.json())


def _wrk_script(body_file: str, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = io.open('{body_file}', 'rb'):read('*a')"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    script = body_file + ".lua"
    Path(script).write_text("\n".join(lines) + "\n")
    return script


async def flood(
    urls: list[str], body: bytes, seconds: float, concurrency: int, headers: dict[str, str]
) -> dict[str, Any]:
    """Closed-loop load split evenly over `urls` (replicas); rates and errors summed."""
    share = max(1, concurrency // len(urls))
    runs = await asyncio.gather(*(flood_one(u, body, seconds, share, headers) for u in urls))
    return {
        "tool": runs[0]["tool"],
        "requests_per_s": sum(r["requests_per_s"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


async def flood_one(
    url: str, body: bytes, seconds: float, concurrency: int, headers: dict[str, str]
) -> dict[str, Any]:
    """Closed-loop load on core 1 against one URL: wrk when installed, else the Python generator."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(body)
        body_file = f.name
    try:
        if shutil.which("wrk"):
            script = _wrk_script(body_file, headers)
            duration = f"-d{max(1, round(seconds))}s"
            proc = await spawn(1, "wrk", "-t1", f"-c{concurrency}", duration, "-s", script, url)
            out = (await proc.communicate())[0].decode()
            os.unlink(script)
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            errors = int(bad.group(1)) if bad else 0
            return {"tool": "wrk", "requests_per_s": rps, "errors": errors}
        argv = [sys.executable, "-m", "bench.loadgen", url, "--seconds", str(seconds)]
        argv += ["--concurrency", str(concurrency), "--body", body_file]
        for k, v in headers.items():
            argv += ["--header", f"{k}:{v}"]
        proc = await spawn(1, *argv)
        result = json.loads((await proc.communicate())[0])
        return {"tool": "python", **result}
    finally:
        os.unlink(body_file)


async def python_load(
    url: str, seconds: float, rate: float, key: str, core: int = 1
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(b'{"event":"bench.latency","payload":{"t_ns":0}}')
        body_file = f.name
    try:
        argv = [sys.executable, "-m", "bench.loadgen", url, "--seconds", str(seconds)]
        argv += ["--body", body_file, "--header", f"X-Meshes-Publishable-Key:{key}"]
        argv += ["--concurrency", "256"]
        if rate:
            argv += ["--rate", str(rate), "--stamp"]
        proc = await spawn(core, *argv)
        return dict(json.loads((await proc.communicate())[0]))
    finally:
        os.unlink(body_file)


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    q = statistics.quantiles(values, n=100)
    return {"p50_ms": round(q[49], 2), "p95_ms": round(q[94], 2), "p99_ms": round(q[98], 2)}


# -- ceilings -------------------------------------------------------------------
async def server_ceiling(seconds: float) -> dict[str, Any]:
    port = unused_port()
    proc = await spawn(0, sys.executable, "-m", "bench.bare_server", str(port))
    try:
        await wait_up(f"http://127.0.0.1:{port}/api/v1/nothing")
        return await flood([f"http://127.0.0.1:{port}/api/v1/events"], SINGLE, seconds, 64, {})
    finally:
        await stop(proc)


async def client_ceiling(seconds: float) -> float:
    async with receiver() as rx:
        argv = [sys.executable, "-m", "bench.loadgen", f"{rx}/hook", "--seconds", str(seconds)]
        proc = await spawn(0, *argv, "--concurrency", "64")
        return float(json.loads((await proc.communicate())[0])["requests_per_s"])


# -- scenarios ------------------------------------------------------------------
async def ingest(args: argparse.Namespace, ceil: dict[str, Any]) -> dict[str, Any]:
    async with gateway() as gw:
        _, key = await workspace(gw)
        idle = gw.rss_mb()
        got = await flood(
            gw.urls("/api/v1/events"), SINGLE, args.seconds, 64, {"X-Meshes-Publishable-Key": key}
        )
        return {
            "events_per_s": round(got["requests_per_s"]),
            "errors": got["errors"],
            "tool": got["tool"],
            "ceiling_per_s": round(ceil["server"]),
            "ratio": round(got["requests_per_s"] / ceil["server"], 2),
            "gateway_idle_rss_mb": idle,
            "gateway_peak_rss_mb": gw.peak_rss_mb(),
        }


async def bulk(args: argparse.Namespace, ceil: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps([{"event": "bench.bulk", "payload": {"n": i}} for i in range(100)]).encode()
    async with gateway() as gw:
        _, key = await workspace(gw)
        got = await flood(
            gw.urls("/api/v1/events/bulk"),
            body,
            args.seconds,
            8,
            {"X-Meshes-Publishable-Key": key},
        )
        return {
            "events_per_s": round(got["requests_per_s"] * 100),
            "errors": got["errors"],
            "tool": got["tool"],
            "gateway_peak_rss_mb": gw.peak_rss_mb(),
        }


async def e2e(args: argparse.Namespace, ceil: dict[str, Any]) -> dict[str, Any]:
    seconds = args.e2e_seconds
    async with receiver() as rx, gateway() as gw:
        ws, key = await workspace(gw)
        await route(gw, ws, f"{rx}/hook")
        share = args.e2e_rate / len(gw.bases)
        load = asyncio.gather(
            *(python_load(u, seconds, share, key) for u in gw.urls("/api/v1/events"))
        )
        backlog = []
        started = time.monotonic()
        while not load.done():
            await asyncio.sleep(1)
            backlog.append(await gw.backlog())
        runs = await load
        sent = {k: sum(r[k] for r in runs) for k in ("requests", "dropped")}
        elapsed = time.monotonic() - started
        received = (await stats(rx))["count"]
        half = backlog[len(backlog) // 2 :] or [0]
        return {
            "offered_per_s": args.e2e_rate,
            "dropped_by_loadgen": sent["dropped"],
            "events_per_s": round(sent["requests"] / elapsed),
            "deliveries_per_s": round(received / elapsed),
            "seconds": round(elapsed, 1),
            "backlog_samples": backlog,
            "backlog_growth_second_half": half[-1] - half[0],
            **percentiles((await stats(rx))["latencies_ms"]),
            "gateway_peak_rss_mb": gw.peak_rss_mb(),
        }


async def drain(args: argparse.Namespace, ceil: dict[str, Any]) -> dict[str, Any]:
    total = args.drain_events
    async with receiver() as rx, gateway(MESHES_PER_CONNECTION_INFLIGHT="256") as gw:
        ws, key = await workspace(gw)
        conn = await route(gw, ws, f"{rx}/hook")
        # Hold sending back: a disabled connection dead-letters what arrives for it.
        await call("PUT", f"{gw.base}/api/v1/connections/{conn}", {"name": "r", "active": False})
        await post_bulks(gw, key, "bench.drain", total)
        while await gw.backlog():
            await asyncio.sleep(0.2)
        rss_backlog = gw.rss_mb()
        await call("PUT", f"{gw.base}/api/v1/connections/{conn}", {"name": "r", "active": True})
        started = time.monotonic()
        queued = (await call("POST", f"{gw.base}/api/v1/deliveries/retry", {"connection": conn}))[
            "queued"
        ]
        while (await stats(rx))["count"] < queued:
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        rate = queued / elapsed
        return {
            "backlog": queued,
            "deliveries_per_s": round(rate),
            "seconds": round(elapsed, 2),
            "ceiling_per_s": round(ceil["client"]),
            "ratio": round(rate / ceil["client"], 2),
            "gateway_rss_with_backlog_mb": rss_backlog,
            "gateway_peak_rss_mb": gw.peak_rss_mb(),
        }


async def latency(args: argparse.Namespace, ceil: dict[str, Any]) -> dict[str, Any]:
    async with receiver() as rx, gateway() as gw:
        ws, key = await workspace(gw)
        await route(gw, ws, f"{rx}/hook")
        sent = await python_load(f"{gw.base}/api/v1/events", args.seconds, args.latency_rate, key)
        await asyncio.sleep(0.5)
        got = await stats(rx)
        return {
            "rate_per_s": args.latency_rate,
            "sent": sent["requests"],
            "delivered": got["count"],
            **percentiles(got["latencies_ms"]),
            "gateway_peak_rss_mb": gw.peak_rss_mb(),
        }


async def fanout(args: argparse.Namespace, ceil: dict[str, Any]) -> dict[str, Any]:
    events = args.fanout_events
    async with receiver() as rx, gateway() as gw:
        ws, key = await workspace(gw)
        for n in range(10):
            await route(gw, ws, f"{rx}/hook/{n}")
        started = time.monotonic()
        await post_bulks(gw, key, "bench.fanout", events)
        expected = events * 10
        while (await stats(rx))["count"] < expected:
            await asyncio.sleep(0.1)
        got = await stats(rx)
        elapsed = (got["last_ns"] - got["first_ns"]) / 1e9 or time.monotonic() - started
        rate = expected / elapsed
        return {
            "events": events,
            "deliveries": expected,
            "deliveries_per_s": round(rate),
            "ceiling_per_s": round(ceil["client"]),
            "ratio": round(rate / ceil["client"], 2),
            "gateway_peak_rss_mb": gw.peak_rss_mb(),
        }


def verdict(name: str, result: dict[str, Any]) -> dict[str, Any]:
    metric, goal = TARGETS[name]
    value = result[metric]
    met = value <= goal if metric == "p99_ms" else value >= goal
    if name == "latency":
        met = met and result["p50_ms"] <= 5.0
    return {"target": f"{metric} {'<=' if metric == 'p99_ms' else '>='} {goal}", "met": met}


async def main(args: argparse.Namespace) -> None:
    chosen = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]
    ceil: dict[str, Any] = {}
    if {"ingest"} & set(chosen):
        ceil["server"] = (await server_ceiling(args.seconds))["requests_per_s"]
    if {"drain", "fanout"} & set(chosen):
        ceil["client"] = await client_ceiling(args.seconds)
    backend = "postgresql" if args.database_url else "sqlite"
    BACKEND.update(database_url=args.database_url, replicas=args.replicas)
    print(
        json.dumps(
            {"scenario": "ceilings", **ceil, "cpus": os.cpu_count(), "backend": backend}
            | {"replicas": args.replicas}
        ),
        flush=True,
    )
    runners = {
        "ingest": ingest,
        "bulk": bulk,
        "e2e": e2e,
        "drain": drain,
        "latency": latency,
        "fanout": fanout,
    }
    for name in chosen:
        result = await runners[name](args, ceil)
        result = {"backend": backend, "replicas": args.replicas, **result}
        print(json.dumps({"scenario": name, **result, **verdict(name, result)}), flush=True)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the harness runs")
    parser.add_argument("--only", default="", help="comma-separated scenarios")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--e2e-seconds", type=float, default=30.0)
    parser.add_argument("--e2e-rate", type=float, default=4000.0)
    parser.add_argument("--drain-events", type=int, default=100_000)
    parser.add_argument("--latency-rate", type=float, default=500.0)
    parser.add_argument("--fanout-events", type=int, default=10_000)
    parser.add_argument("--database-url", default="", help="postgresql://... (default: SQLite)")
    parser.add_argument("--replicas", type=int, default=1, help="gateway processes (PostgreSQL)")
    args = parser.parse_args()
    if args.replicas > 1 and not args.database_url:
        parser.error("--replicas needs --database-url (one SQLite file, one process)")
    if args.smoke:
        args.seconds, args.e2e_seconds, args.e2e_rate = 1.0, 1.0, 100.0
        args.drain_events, args.latency_rate, args.fanout_events = 300, 100.0, 100
    return args


if __name__ == "__main__":
    from bench.loops import new_loop

    new_loop().run_until_complete(main(parse()))
