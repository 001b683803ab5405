"""A loopback webhook receiver for benchmarks (its own process).

Answers 200 on any POST path at once and records, per delivery, the time from
the emitter's `t_ns` (wall clock in the payload, when present) to arrival.
`GET /stats` returns the count and the latencies; `POST /reset` clears them.
`--print` also prints each delivery's `webhook-*` headers and body.

    python -m bench.receiver PORT [--print]
"""

from __future__ import annotations

import json
import sys
import time

import msgspec
from aiohttp import web

from bench.loops import new_loop

_decode = msgspec.json.decode


def main(port: int, show: bool) -> None:
    latencies_ms: list[float] = []
    seen = {"count": 0, "first_ns": 0, "last_ns": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time_ns()
        seen["count"] += 1
        seen["first_ns"] = seen["first_ns"] or now
        seen["last_ns"] = now
        if show:
            signed = {k: v for k, v in request.headers.items() if k.lower().startswith("webhook-")}
            print(
                json.dumps({"headers": signed, "body": body.decode(errors="replace")}), flush=True
            )
        if b'"t_ns"' in body:
            try:
                sent = _decode(body)["payload"]["t_ns"]
            except (msgspec.DecodeError, KeyError, TypeError):
                sent = None
            if isinstance(sent, int):
                latencies_ms.append((now - sent) / 1e6)
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**seen, "latencies_ms": latencies_ms})

    async def reset(request: web.Request) -> web.Response:
        latencies_ms.clear()
        seen.update(count=0, first_ns=0, last_ns=0)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=new_loop())


if __name__ == "__main__":
    main(int(sys.argv[1]), show="--print" in sys.argv[2:])
