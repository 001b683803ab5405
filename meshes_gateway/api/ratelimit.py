"""Per-publishable-key rate limit: a token bucket per key, refilled by the injected clock.

One process keeps the buckets in memory; replicas sharing a PostgreSQL
database keep them in it, so a key's limit holds whichever replica it hits.
"""

from __future__ import annotations

import math
from typing import Protocol

from meshes_gateway.clock import Clock
from meshes_gateway.errors import TooManyRequests
from meshes_gateway.storage.base import Store


class RateLimiter(Protocol):
    async def take(self, key: str, events: int) -> None:
        """Spend `events` tokens or raise 429 with the seconds until they are there."""


def _too_many(missing: float, rate_per_ms: float) -> TooManyRequests:
    wait_s = max(1, math.ceil(missing / rate_per_ms / 1000))
    return TooManyRequests(
        "rate limit exceeded for this publishable key", headers={"Retry-After": str(wait_s)}
    )


class TokenBuckets:
    """`rate_per_s` events per second per key, with bursts of up to `burst` events.

    Only keys that authenticated get a bucket, so memory is bounded by the
    number of issued keys, not by what callers send. A rate of 0 turns it off.
    """

    def __init__(self, clock: Clock, rate_per_s: float, burst: float) -> None:
        self._clock = clock
        self._rate_per_ms = rate_per_s / 1000
        self._burst = max(burst, 1.0)
        self._buckets: dict[str, tuple[float, int]] = {}

    async def take(self, key: str, events: int) -> None:
        if self._rate_per_ms <= 0:
            return
        now = self._clock.now_ms()
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate_per_ms)
        if events > tokens:
            self._buckets[key] = (tokens, now)
            raise _too_many(min(events, self._burst) - tokens, self._rate_per_ms)
        self._buckets[key] = (tokens - events, now)


class SharedBuckets:
    """The same buckets, stored in the database replicas share (one statement per request)."""

    def __init__(self, store: Store, clock: Clock, rate_per_s: float, burst: float) -> None:
        self._store = store
        self._clock = clock
        self._rate_per_ms = rate_per_s / 1000
        self._burst = max(burst, 1.0)

    async def take(self, key: str, events: int) -> None:
        if self._rate_per_ms <= 0:
            return
        missing = await self._store.take_tokens(
            key, events, self._rate_per_ms, self._burst, self._clock.now_ms()
        )
        if missing > 0:
            raise _too_many(missing, self._rate_per_ms)
