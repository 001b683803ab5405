"""Cursor pagination in Meshes' list envelope `{count, limit, next_cursor, records}`.

Lists are ordered newest first by UUIDv7 id and the cursor is the last id
returned, so rows inserted while a client pages (all newer) never shift the
pages it has not read yet: nothing repeats and nothing is skipped.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from aiohttp import web

from meshes_gateway.api.http import query_int
from meshes_gateway.errors import BadRequest
from meshes_gateway.ids import is_uuid
from meshes_gateway.storage.records import Page

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        last_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("`cursor` is not a cursor this server issued") from None
    if not is_uuid(last_id):
        raise BadRequest("`cursor` is not a cursor this server issued")
    return last_id


def page_params(request: web.Request) -> tuple[int, str | None]:
    """`limit` and the decoded `cursor` of a list request."""
    limit = query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cursor = request.query.get("cursor")
    return limit, (decode_cursor(cursor) if cursor else None)


def envelope(page: Page, limit: int, render: Callable[[Any], Any]) -> dict[str, Any]:
    records = [render(r) for r in page.records]
    return {
        "count": len(records),
        "limit": limit,
        "next_cursor": encode_cursor(page.next_cursor) if page.next_cursor else None,
        "records": records,
    }
