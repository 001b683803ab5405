"""Periodic housekeeping: idempotency expiry, retention, auto-disabling failing connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from meshes_gateway.clock import Clock
from meshes_gateway.storage.base import Store, StoreError

log = structlog.get_logger(__name__)

DAY_MS = 86_400_000
# Small batches keep each purge transaction short, so ingest is never held up.
PURGE_BATCH = 1000


class Maintenance:
    """Runs `tick` every `interval_s`."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        idempotency_ttl_s: int,
        retention_days: int,
        disable_after_s: float,
        on_disabled: Callable[[str], None] = lambda _: None,
        interval_s: float = 60.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._idempotency_ttl_ms = idempotency_ttl_s * 1000
        self._retention_ms = retention_days * DAY_MS
        self._disable_after_ms = int(disable_after_s * 1000)
        self._on_disabled = on_disabled
        self._interval_s = interval_s

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.tick()
            except StoreError as exc:
                log.error("maintenance_failed", error=str(exc))

    async def tick(self) -> int:
        """One round of housekeeping; returns the number of events purged.

        Replicas sharing a database leave it to the advisory-lock leader.
        """
        if not await self._store.is_leader():
            return 0
        now = self._clock.now_ms()
        await self.disable_failing(now)
        await self._store.purge_idempotency(now - self._idempotency_ttl_ms)
        purged = 0
        while True:
            batch = await self._store.purge_history(now - self._retention_ms, PURGE_BATCH)
            purged += batch
            if batch < PURGE_BATCH:
                break
            await asyncio.sleep(0)  # let requests in between batches
        if purged:
            log.info("history_purged", events=purged)
        return purged

    async def disable_failing(self, now_ms: int) -> list[str]:
        """Disable connections that have only failed for `disable_after_s`."""
        failing = await self._store.failing_connections(now_ms - self._disable_after_ms)
        if failing:
            await self._store.disable_connections(dict.fromkeys(failing, "failing"), now_ms)
            for connection_id in failing:
                self._on_disabled(connection_id)
                log.warning("connection_disabled", connection=connection_id, reason="failing")
        return failing
