"""Group commit: one task writes the work of many requests in one transaction.

Ingest handlers and senders hand their rows to `Writer` and await a future;
the writer takes everything queued (up to `batch_max_rows`), commits it as one
`Store.write`, then resolves every future. While one commit is on disk the
next batch accumulates, so the batch size grows with load by itself and a
lone request is never held back waiting for company.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from meshes_gateway.clock import Clock
from meshes_gateway.errors import Unavailable
from meshes_gateway.storage.base import Store
from meshes_gateway.storage.records import (
    Event,
    IdempotencyRecord,
    Outcome,
    RuleEvent,
    WriteBatch,
)

log = structlog.get_logger(__name__)


class Handoff(Protocol):
    """Who takes fresh deliveries straight from a commit (the scheduler)."""

    def take(self, rule_events: list[RuleEvent]) -> list[RuleEvent]: ...
    def untake(self, taken: list[RuleEvent]) -> None: ...
    def start(self, taken: list[RuleEvent], events: dict[str, Event]) -> None: ...


@dataclass(slots=True)
class _Work:
    """One request's share of a batch."""

    events: list[Event] = field(default_factory=list)
    rule_events: list[RuleEvent] = field(default_factory=list)
    idempotency: IdempotencyRecord | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    disable: dict[str, str] = field(default_factory=dict)
    done: asyncio.Future[None] | None = None

    @property
    def rows(self) -> int:
        return len(self.events) + len(self.rule_events) + len(self.outcomes) + 1


class Writer:
    """The single writer of events, deliveries and outcomes."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        max_rows: int,
        max_wait_ms: float,
        queue_max: int,
        on_commit: Callable[[bool], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_rows = max_rows
        self._max_wait_s = max_wait_ms / 1000
        self._queue_max = queue_max
        # Outcomes go first: they are bounded by the sending slots, and a sender
        # waiting behind a queue of ingest would starve delivery under load.
        self._outcomes: deque[_Work] = deque()
        self._ingest: deque[_Work] = deque()
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._on_commit = on_commit
        self.handoff: Handoff | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def ingest(
        self,
        events: list[Event],
        rule_events: list[RuleEvent],
        idempotency: IdempotencyRecord | None,
        admit_timeout_s: float = 5.0,
    ) -> None:
        """Write events and their deliveries; returns once they are durable.

        When `queue_max` requests already wait, the caller is held for up to
        `admit_timeout_s`, then answered 503 so that it backs off instead of
        memory (and every waiter's latency) growing.
        """
        self._check_open()
        if len(self._ingest) >= self._queue_max:
            await self._admission(admit_timeout_s)
        work = _Work(events=events, rule_events=rule_events, idempotency=idempotency)
        self._ingest.append(work)
        if len(self._ingest) >= self._queue_max:
            self._space.clear()
        await self._enqueued(work)

    async def record(self, outcomes: list[Outcome], disable: dict[str, str] | None = None) -> None:
        """Write delivery outcomes (and connections to disable); returns once durable."""
        self._check_open()
        work = _Work(outcomes=outcomes, disable=disable or {})
        self._outcomes.append(work)
        await self._enqueued(work)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, looked up once: `asyncio.get_running_loop()` costs a getpid()
        system call on Python 3.11, and profiles under load showed it at ~10 %
        of the main thread (once per request, once per delivery)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the gateway is shutting down", headers={"Retry-After": "1"})

    async def _admission(self, timeout_s: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self._ingest) >= self._queue_max:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._space.wait(), max(remaining, 0))
            except TimeoutError:
                raise Unavailable(
                    "the write pipeline is full; retry shortly", headers={"Retry-After": "1"}
                ) from None
            self._check_open()

    async def _enqueued(self, work: _Work) -> None:
        work.done = self._running_loop().create_future()
        self._ready.set()
        await work.done

    async def run(self) -> None:
        """Commit batches until `stop` has been called and everything queued is written."""
        while await self.tick() >= 0:
            pass

    async def tick(self) -> int:
        """Wait for work, commit one batch, resolve its waiters; rows written, or -1 at stop."""
        await self._ready.wait()
        if self._max_wait_s > 0 and len(self._ingest) + len(self._outcomes) == 1:
            await asyncio.sleep(self._max_wait_s)
        batch: list[_Work] = []
        rows = 0
        while self._outcomes:
            work = self._outcomes.popleft()
            batch.append(work)
            rows += work.rows
        while self._ingest and rows < self._max_rows:
            work = self._ingest.popleft()
            batch.append(work)
            rows += work.rows
        if not self._ingest and not self._outcomes and not self._closed:
            self._ready.clear()
        if len(self._ingest) < self._queue_max:
            self._space.set()
        if not batch:
            return -1 if self._closed else 0
        await self._commit(batch)
        return rows

    async def stop(self) -> None:
        """Refuse new work; `run` returns once everything queued so far is committed."""
        self._closed = True
        self._ready.set()
        self._space.set()

    async def _commit(self, batch: list[_Work]) -> None:
        merged = WriteBatch(now_ms=self._clock.now_ms())
        for work in batch:
            merged.events.extend(work.events)
            merged.rule_events.extend(work.rule_events)
            if work.idempotency is not None:
                merged.idempotency.append(work.idempotency)
            merged.outcomes.extend(work.outcomes)
            merged.disable_connections.update(work.disable)
        # Fresh deliveries the scheduler has room for are inserted already leased
        # to it and handed over after the commit, skipping a claim round trip.
        taken = self.handoff.take(merged.rule_events) if self.handoff and merged.rule_events else []
        try:
            await self._store.write(merged)
        except Exception as exc:
            # Nobody gets a 2xx for rows that are not durable; senders' rows stay
            # leased and are delivered again once the lease runs out.
            if taken and self.handoff:
                self.handoff.untake(taken)
            log.error("group_commit_failed", error=str(exc), requests=len(batch))
            for work in batch:
                if work.done is not None and not work.done.done():
                    work.done.set_exception(
                        Unavailable("storage is unavailable", headers={"Retry-After": "1"})
                    )
            return
        for work in batch:
            if work.done is not None and not work.done.done():
                work.done.set_result(None)
        if taken and self.handoff:
            self.handoff.start(taken, {e.id: e for e in merged.events})
        self._on_commit(len(taken) < len(merged.rule_events))
