"""Identifiers: time-ordered UUIDv7 for records, and RFC 3339 rendering of times."""

from __future__ import annotations

import datetime as dt

import uuid_utils


def new_id() -> str:
    """A new UUIDv7 in canonical lowercase form; ids sort by creation time."""
    return str(uuid_utils.uuid7())


def is_uuid(value: str) -> bool:
    """True when `value` is a canonical 8-4-4-4-12 hex UUID (what Meshes clients send)."""
    if len(value) != 36:
        return False
    try:
        return str(uuid_utils.UUID(value)) == value.lower()
    except ValueError:
        return False


def rfc3339(ms: int) -> str:
    """Milliseconds since the epoch as an RFC 3339 UTC string with millisecond precision."""
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_rfc3339(value: str) -> int:
    """An RFC 3339 string (with `Z` or an offset) as milliseconds since the epoch."""
    stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError("a time zone is required")
    return int(stamp.timestamp() * 1000)


def uuid7_floor(ms: int) -> str:
    """The smallest UUIDv7 made at or after `ms`: turns a time bound into an id bound."""
    stamp = f"{max(ms, 0):012x}"
    return f"{stamp[:8]}-{stamp[8:]}-0000-0000-000000000000"
