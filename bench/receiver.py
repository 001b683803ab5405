"""A loopback webhook receiver for benchmarks (its own process).

Answers 200 at once and records, per delivery, the time from the emitter's
`t_ns` (wall clock in the payload) to arrival; `GET /stats` returns them.
`--print` also prints each delivery's `webhook-*` headers and body.

    python -m bench.receiver PORT [--print]
"""

from __future__ import annotations

import json
import sys
import time

import msgspec
from aiohttp import web

_decode = msgspec.json.decode


def main(port: int, show: bool) -> None:
    latencies_ms: list[float] = []
    seen = {"count": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time_ns()
        seen["count"] += 1
        if show:
            signed = {k: v for k, v in request.headers.items() if k.lower().startswith("webhook-")}
            print(
                json.dumps({"headers": signed, "body": body.decode(errors="replace")}), flush=True
            )
        try:
            sent = _decode(body)["payload"].get("t_ns")
        except (msgspec.DecodeError, KeyError, AttributeError):
            sent = None
        if isinstance(sent, int):
            latencies_ms.append((now - sent) / 1e6)
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"count": seen["count"], "latencies_ms": latencies_ms})

    async def reset(request: web.Request) -> web.Response:
        latencies_ms.clear()
        seen["count"] = 0
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), show="--print" in sys.argv[2:])
