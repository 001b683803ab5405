"""Periodic housekeeping: expired idempotency keys."""

from __future__ import annotations

import asyncio

import structlog

from meshes_gateway.clock import Clock
from meshes_gateway.storage.base import Store, StoreError

log = structlog.get_logger(__name__)


class Maintenance:
    """Runs `tick` every `interval_s`."""

    def __init__(
        self, store: Store, clock: Clock, *, idempotency_ttl_s: int, interval_s: float = 60.0
    ) -> None:
        self._store = store
        self._clock = clock
        self._idempotency_ttl_ms = idempotency_ttl_s * 1000
        self._interval_s = interval_s

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.tick()
            except StoreError as exc:
                log.error("maintenance_failed", error=str(exc))

    async def tick(self) -> int:
        """Purge idempotency keys past their lifetime; returns how many."""
        return await self._store.purge_idempotency(self._clock.now_ms() - self._idempotency_ttl_ms)
