"""Ceiling for ingest: a bare aiohttp server decoding the same JSON POST and answering 201.

python -m bench.bare_server PORT
"""

from __future__ import annotations

import sys

import msgspec
from aiohttp import web

from bench.loops import new_loop

_decode = msgspec.json.Decoder().decode


async def events(request: web.Request) -> web.Response:
    _decode(await request.read())
    return web.Response(body=b'{"event":{}}', status=201, content_type="application/json")


def main(port: int) -> None:
    app = web.Application()
    app.router.add_post("/api/v1/events", events)
    app.router.add_post("/api/v1/events/bulk", events)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=new_loop())


if __name__ == "__main__":
    main(int(sys.argv[1]))
