"""Liveness and readiness probes."""

from __future__ import annotations

from aiohttp import web

from meshes_gateway.api.http import json_response
from meshes_gateway.api.state import GATEWAY
from meshes_gateway.errors import Unavailable
from meshes_gateway.storage.base import StoreError

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Storage accepts writes."""
    try:
        await request.app[GATEWAY].store.ping()
    except StoreError as exc:
        raise Unavailable(str(exc)) from None
    return json_response({"status": "ready"})
