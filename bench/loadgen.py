"""Load generator (its own process): closed-loop floods and fixed-rate streams over aiohttp.

Prints one JSON object: requests sent, answered 2xx, errors, seconds, rate.

    python -m bench.loadgen URL --seconds S --concurrency C [--rate R] [--header K:V] [--body FILE]
        [--stamp]   put the wall clock in payload.t_ns of a single-event body (latency runs)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from bench.loops import new_loop


async def run(args: argparse.Namespace) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    for pair in args.header:
        name, _, value = pair.partition(":")
        headers[name] = value
    body = open(args.body, "rb").read() if args.body else b"{}"  # noqa: ASYNC230, SIM115
    template = json.loads(body) if args.stamp else None
    counts = {"ok": 0, "errors": 0, "dropped": 0}
    deadline = time.monotonic() + args.seconds
    connector = aiohttp.TCPConnector(limit=0)

    async def send(session: aiohttp.ClientSession) -> None:
        data = body
        if template is not None:
            template["payload"]["t_ns"] = time.time_ns()
            data = json.dumps(template).encode()
        try:
            async with session.post(args.url, data=data, headers=headers) as resp:
                await resp.read()
                counts["ok" if resp.status < 300 else "errors"] += 1
        except aiohttp.ClientError:
            counts["errors"] += 1

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        if args.rate:
            # Fixed rate, open loop: a request every 1/rate s whatever the answers do.
            # At most --concurrency requests outstanding: a send that would pass it
            # is dropped and counted, so an overloaded gateway shows up as drops
            # instead of an ever-growing pile of open requests.
            interval = 1 / args.rate
            pending: set[asyncio.Task[None]] = set()
            i = 0
            while time.monotonic() < deadline:
                await asyncio.sleep(max(0.0, started + i * interval - time.monotonic()))
                i += 1
                if len(pending) >= args.concurrency:
                    counts["dropped"] += 1
                    continue
                task = asyncio.create_task(send(session))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending)
        else:

            async def worker() -> None:
                while time.monotonic() < deadline:
                    await send(session)

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.monotonic() - started
    return {
        "requests": counts["ok"],
        "errors": counts["errors"],
        "dropped": counts["dropped"],
        "seconds": round(elapsed, 3),
        "requests_per_s": round(counts["ok"] / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body")
    parser.add_argument("--stamp", action="store_true")
    args = parser.parse_args()
    loop = new_loop()
    print(json.dumps(loop.run_until_complete(run(args))), flush=True)


if __name__ == "__main__":
    main()
