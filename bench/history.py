"""History at scale: listing latency on a database of a million events, and bulk replay rate.

Builds the database through the real `SqliteStore.write` (the same batches the
group commit writes), then times the store's listing queries and a bulk replay.

    python -m bench.history [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from meshes_gateway.storage.records import (
    DeliveryFilter,
    Event,
    EventFilter,
    RuleEvent,
    WriteBatch,
)
from meshes_gateway.storage.sqlite import SqliteStore

DAY_MS = 86_400_000


def uuid7_at(ms: int, rng: random.Random) -> str:
    raw = f"{ms:012x}7{rng.getrandbits(12):03x}{8 | rng.getrandbits(2):x}{rng.getrandbits(62):016x}"
    raw = raw[:32]
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


async def build(store: SqliteStore, events: int, rng: random.Random) -> dict[str, Any]:
    """`events` events over 30 days in 10 workspaces, 1 delivery each, 10 % failed."""
    start_ms = int(time.time() * 1000) - 30 * DAY_MS
    step = 30 * DAY_MS // events
    workspaces = [uuid7_at(start_ms, rng) for _ in range(10)]
    connections = [uuid7_at(start_ms, rng) for _ in range(10)]
    names = ["invoice.paid", "invoice.created", "user.signup", "user.updated", "order.created"]
    batch = 20_000
    began = time.perf_counter()
    for offset in range(0, events, batch):
        evs, res = [], []
        for i in range(offset, min(offset + batch, events)):
            ms = start_ms + i * step
            w = i % 10
            failed = i % 10 == 3
            eid = uuid7_at(ms, rng)
            evs.append(
                Event(
                    id=eid,
                    workspace_id=workspaces[w],
                    event=names[i % len(names)],
                    resource="invoice",
                    resource_id=f"in_{i}",
                    payload=b'{"amount":4200,"currency":"eur"}',
                    created_by="pub_key",
                    created_at_ms=ms,
                    status="failed" if failed else "completed",
                    total_rules=1,
                    completed_count=0 if failed else 1,
                    failed_count=1 if failed else 0,
                    completed_at_ms=ms + 50,
                )
            )
            res.append(
                RuleEvent(
                    id=uuid7_at(ms, rng),
                    event_id=eid,
                    workspace_id=workspaces[w],
                    rule_id=connections[w],
                    connection_id=connections[w],
                    status="failed" if failed else "completed",
                    attempt_count=8 if failed else 1,
                    next_attempt_at_ms=None,
                    last_error="HTTP 500 (retries exhausted)" if failed else None,
                    started_at_ms=ms,
                    completed_at_ms=ms + 50,
                    created_at_ms=ms,
                )
            )
        await store.write(WriteBatch(events=evs, rule_events=res))
    return {
        "build_s": round(time.perf_counter() - began, 1),
        "workspaces": workspaces,
        "connections": connections,
        "start_ms": start_ms,
    }


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int = 25) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(samples), 2)


def floor_id(ms: int) -> str:
    stamp = f"{ms:012x}"
    return f"{stamp[:8]}-{stamp[8:]}-0000-0000-000000000000"


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="meshes-history-") as tmp:
        store = SqliteStore(Path(tmp) / "history.db", synchronous="NORMAL")
        await store.open()
        built = await build(store, args.events, rng)
        ws, conn = built["workspaces"][3], built["connections"][3]
        mid = built["start_ms"] + 15 * DAY_MS
        page = await store.list_events(EventFilter(workspace_id=ws), 20, None)
        deep = page.next_cursor
        for _ in range(50):  # a cursor 1,000 rows deep
            page = await store.list_events(EventFilter(workspace_id=ws), 20, deep)
            deep = page.next_cursor
        queries: dict[str, Callable[[], Awaitable[Any]]] = {
            "events_org_first_page": lambda: store.list_events(EventFilter(), 20, None),
            "events_workspace": lambda: store.list_events(EventFilter(workspace_id=ws), 20, None),
            "events_workspace_deep_cursor": lambda: store.list_events(
                EventFilter(workspace_id=ws), 20, deep
            ),
            "events_workspace_failed": lambda: store.list_events(
                EventFilter(workspace_id=ws, status="failed"), 20, None
            ),
            "events_workspace_event_name": lambda: store.list_events(
                EventFilter(workspace_id=ws, event="user.signup"), 20, None
            ),
            "events_workspace_day_range": lambda: store.list_events(
                EventFilter(
                    workspace_id=ws, after_id=floor_id(mid), before_id=floor_id(mid + DAY_MS)
                ),
                20,
                None,
            ),
            "events_resource_id": lambda: store.list_events(
                EventFilter(workspace_id=ws, resource="invoice", resource_id="in_500003"), 20, None
            ),
            "deliveries_connection_failed": lambda: store.list_deliveries(
                DeliveryFilter(connection_id=conn, status="failed"), 20, None
            ),
            "deliveries_failed_org": lambda: store.list_deliveries(
                DeliveryFilter(status="failed"), 20, None
            ),
        }
        results = {name: await timed(fn) for name, fn in queries.items()}
        print(
            json.dumps({"scenario": "history_queries", "events": args.events, "median_ms": results})
        )

        failed = DeliveryFilter(connection_id=conn, after_id=floor_id(built["start_ms"]))
        began = time.perf_counter()
        queued = 0
        while True:
            count, last = await store.requeue_failed(failed, int(time.time() * 1000), 500)
            queued += count
            if count < 500 or last is None:
                break
            failed = DeliveryFilter(connection_id=conn, after_id=last + "0")
        elapsed = time.perf_counter() - began
        size_mb = await asyncio.to_thread(os.path.getsize, Path(tmp) / "history.db") / 2**20
        print(
            json.dumps(
                {
                    "scenario": "bulk_replay",
                    "queued": queued,
                    "seconds": round(elapsed, 2),
                    "per_s": round(queued / elapsed),
                    "build_s": built["build_s"],
                    "db_mb": round(size_mb),
                }
            )
        )
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args()))
