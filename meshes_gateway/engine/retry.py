"""The retry schedule: a pure function from attempts made to the next delay."""

from __future__ import annotations

import random
from collections.abc import Sequence

JITTER = 0.20
# Honour a receiver's Retry-After, but never let it park a delivery for longer than this.
MAX_RETRY_AFTER_S = 3600.0


def next_delay_s(
    attempts_made: int,
    schedule_s: Sequence[float],
    rng: random.Random,
    retry_after_s: float | None = None,
) -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts, or None when exhausted.

    The first attempt is immediate, so attempt n + 1 waits `schedule_s[n - 1]`
    (with ±20 % jitter so that a fleet of deliveries failing together does not
    retry together). A `Retry-After` from the receiver replaces the scheduled
    delay, bounded by `MAX_RETRY_AFTER_S`; it never adds attempts.
    """
    if attempts_made < 1 or attempts_made > len(schedule_s):
        return None
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
    base = schedule_s[attempts_made - 1]
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


def parse_retry_after(value: str | None) -> float | None:
    """A `Retry-After` header in delay-seconds form; HTTP dates and junk are ignored."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
