"""Identifiers: time-ordered UUIDv7 for records, and RFC 3339 rendering of times."""

from __future__ import annotations

import datetime as dt
import functools
import random
import time
import uuid

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class _Uuid7:
    """RFC 9562 UUIDv7 with a 12-bit counter (method 1), monotonic within a process.

    Ids made in the same millisecond count up from a random start, so ids sort
    in the order they were made; the counter spilling over borrows the next
    millisecond rather than breaking the order.
    """

    def __init__(self) -> None:
        self._last_ms = -1
        self._seq = 0
        # Ids are identifiers, not secrets (nothing is authorised by knowing one),
        # so a fast PRNG seeded from the OS is enough.
        self._random = random.Random()

    def make(self, at_ms: int | None) -> str:
        ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
        # Within a few milliseconds of the last id (same millisecond, a borrowed
        # one, a small clock step back) keep counting; a time far in the past
        # (a test's clock) is taken as given.
        if self._last_ms - _MAX_BORROW_MS <= ms <= self._last_ms:
            ms = self._last_ms
            self._seq += 1
            if self._seq > 0xFFF:
                ms += 1
                self._seq = self._random.getrandbits(11)
        else:
            self._seq = self._random.getrandbits(11)
        self._last_ms = ms
        value = (ms << 80) | (0x7 << 76) | (self._seq << 64) | (0b10 << 62)
        h = f"{value | self._random.getrandbits(62):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_MAX_BORROW_MS = 10
_uuid7 = _Uuid7()


def new_id(at_ms: int | None = None) -> str:
    """A new UUIDv7 in canonical lowercase form; ids sort by creation time.

    Pass the injected clock's time where a record's id must agree with its
    stored creation time (events: `since`/`until` are id ranges).
    """
    return _uuid7.make(at_ms)


def is_uuid(value: str) -> bool:
    """True when `value` is a canonical 8-4-4-4-12 hex UUID (what Meshes clients send)."""
    if len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def rfc3339(ms: int) -> str:
    """Milliseconds since the epoch as an RFC 3339 UTC string with millisecond precision."""
    # The formatted second is cached: strftime per answer showed in ingest profiles.
    seconds, millis = divmod(ms, 1000)
    return f"{_second(seconds)}{millis:03d}Z"


def parse_rfc3339(value: str) -> int:
    """An RFC 3339 string (with `Z` or an offset) as milliseconds since the epoch."""
    stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError("a time zone is required")
    # Integer arithmetic: float seconds * 1000 can land a millisecond short.
    return (stamp - _EPOCH) // dt.timedelta(milliseconds=1)


def uuid7_floor(ms: int) -> str:
    """The smallest UUIDv7 made at or after `ms`: turns a time bound into an id bound."""
    stamp = f"{max(ms, 0):012x}"
    return f"{stamp[:8]}-{stamp[8:]}-0000-0000-000000000000"
