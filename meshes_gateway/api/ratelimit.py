"""Per-publishable-key rate limit: a token bucket per key, refilled by the injected clock."""

from __future__ import annotations

import math

from meshes_gateway.clock import Clock
from meshes_gateway.errors import TooManyRequests


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

    def take(self, key: str, events: int) -> None:
        """Spend `events` tokens or raise 429 with the seconds until they are there."""
        if self._rate_per_ms <= 0:
            return
        now = self._clock.now_ms()
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate_per_ms)
        if events > tokens:
            self._buckets[key] = (tokens, now)
            missing = min(events, self._burst) - tokens
            wait_s = max(1, math.ceil(missing / self._rate_per_ms / 1000))
            raise TooManyRequests(
                "rate limit exceeded for this publishable key",
                headers={"Retry-After": str(wait_s)},
            )
        self._buckets[key] = (tokens - events, now)
