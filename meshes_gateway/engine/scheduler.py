"""The scheduler: claims due deliveries under a lease and runs them on a bounded pool.

Room is checked before claiming (as arq does), so the process never holds
more claimed rows than it has sending slots; a connection at its own cap is
left out of the claim so one slow endpoint cannot take every slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

import structlog

from meshes_gateway.clock import Clock
from meshes_gateway.engine.directory import Directory
from meshes_gateway.engine.outcome import decide
from meshes_gateway.engine.sender import AttemptResult, Sender
from meshes_gateway.engine.writer import Writer
from meshes_gateway.ids import new_id
from meshes_gateway.storage.base import Store, StoreError
from meshes_gateway.storage.records import Attempt, Claimed, Event, Outcome, RuleEvent

log = structlog.get_logger(__name__)


class Scheduler:
    """Claims, dispatches and records deliveries."""

    def __init__(
        self,
        store: Store,
        writer: Writer,
        sender: Sender,
        directory: Directory,
        clock: Clock,
        *,
        max_inflight: int,
        per_connection_inflight: int,
        lease_s: float,
        poll_interval_s: float,
        retry_schedule_s: tuple[float, ...],
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._sender = sender
        self._directory = directory
        self._clock = clock
        self._max_inflight = max_inflight
        self._per_connection_cap = per_connection_inflight
        self._lease_ms = int(lease_s * 1000)
        self._poll_interval_s = poll_interval_s
        self._schedule_s = retry_schedule_s
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], Claimed] = {}
        self._per_connection: Counter[str] = Counter()
        self._backlog = False
        self._stopping = False
        # Slots promised to deliveries being committed by the writer (see `take`).
        self._reserved = 0
        # Hand-offs whose commit finished after `stop`: not sent, released on shutdown.
        self.late_handoffs: list[str] = []
        self._next_sweep_ms = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    def wake(self) -> None:
        """New work was committed: claim now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and dispatch until cancelled; polling is only the fallback for retries."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            self._wake.clear()
            try:
                await self.sweep()
                await self.tick()
            except StoreError as exc:
                log.error("scheduler_store_error", error=str(exc))

    async def sweep(self) -> None:
        """Reclaim expired leases (a crashed or killed sender), at most every half lease.

        With replicas only the leader sweeps: one statement per period for the
        whole cluster instead of one per replica.
        """
        now = self._clock.now_ms()
        if now < self._next_sweep_ms:
            return
        self._next_sweep_ms = now + self._lease_ms // 2
        if not await self._store.is_leader():
            return
        released = await self._store.release_expired(now)
        if released:
            log.info("leases_expired_released", count=released)

    async def tick(self) -> int:
        """Claim what fits in the free slots and start sending it; returns how many."""
        free = self._max_inflight - len(self._tasks) - self._reserved
        if free <= 0 or self._stopping:
            return 0
        now = self._clock.now_ms()
        cap = self._per_connection_cap
        room = {c: cap - n for c, n in self._per_connection.items()}
        claimed = await self._store.claim_due(now, free, now + self._lease_ms, room, cap)
        over_cap = []
        for delivery in claimed:
            if self._per_connection[delivery.connection_id] >= self._per_connection_cap:
                over_cap.append(delivery.rule_event_id)
                continue
            self._per_connection[delivery.connection_id] += 1
            self._spawn(delivery)
        if over_cap:  # hand-offs took the room between the claim and now
            await self._store.release(over_cap, now)
        # More may be due than was claimed: all slots filled, or a connection was
        # left out or cut short by its cap. Then freed slots trigger another claim.
        self._backlog = len(claimed) == free or any(n >= cap for n in self._per_connection.values())
        return len(claimed) - len(over_cap)

    # -- hand-off from the writer: fresh deliveries skip the claim ------------------
    def take(self, rule_events: list[RuleEvent]) -> list[RuleEvent]:
        """Reserve slots for deliveries the writer is about to insert, leased to us.

        The writer inserts them as `processing` under our lease and, once the
        commit is durable, hands them over with `start`: the hot path costs no
        claim transaction (and no extra fsync). What does not fit stays
        `pending` for the claim loop. A crash before `start` is covered by the
        lease like any other claim.
        """
        if self._stopping:
            return []
        free = self._max_inflight - len(self._tasks) - self._reserved
        now = self._clock.now_ms()
        taken = []
        for re_ in rule_events:
            if free <= 0:
                break
            due = re_.next_attempt_at_ms is not None and re_.next_attempt_at_ms <= now
            if re_.status != "pending" or not due:
                continue  # e.g. a test delivery, which its probe sends itself
            if self._per_connection[re_.connection_id] >= self._per_connection_cap:
                continue
            self._per_connection[re_.connection_id] += 1
            re_.status = "processing"
            re_.lease_until_ms = now + self._lease_ms
            re_.started_at_ms = now
            taken.append(re_)
            free -= 1
        self._reserved += len(taken)
        return taken

    def untake(self, taken: list[RuleEvent]) -> None:
        """The commit failed: give the reserved slots back."""
        self._reserved -= len(taken)
        for re_ in taken:
            self._connection_done(re_.connection_id)

    def start(self, taken: list[RuleEvent], events: dict[str, Event]) -> None:
        """The commit holding `taken` is durable: send them."""
        self._reserved -= len(taken)
        if self._stopping:
            self.late_handoffs += [re_.id for re_ in taken]
            for re_ in taken:
                self._connection_done(re_.connection_id)
            return
        for re_ in taken:
            event = events[re_.event_id]
            delivery = Claimed(
                rule_event_id=re_.id,
                event_id=re_.event_id,
                workspace_id=re_.workspace_id,
                rule_id=re_.rule_id,
                connection_id=re_.connection_id,
                attempt_count=re_.attempt_count,
                schedule_attempts=re_.schedule_attempts,
                trigger=re_.trigger,
                event=event.event,
                resource=event.resource,
                resource_id=event.resource_id,
                payload=event.payload,
                event_created_at_ms=event.created_at_ms,
            )
            self._spawn(delivery)

    def _spawn(self, delivery: Claimed) -> None:
        if self._loop is None:  # looked up once: see Writer._running_loop
            self._loop = asyncio.get_running_loop()
        task = self._loop.create_task(self._deliver(delivery))
        self._tasks[task] = delivery
        task.add_done_callback(self._finished)

    def _connection_done(self, connection_id: str) -> None:
        """The request to an endpoint is over: its per-connection slot is free again.

        Freed here rather than when the outcome is durable, so a connection's cap
        counts requests in flight to it, not commits queued behind ingest.
        """
        left = self._per_connection[connection_id] - 1
        if left <= 0:
            del self._per_connection[connection_id]
        else:
            self._per_connection[connection_id] = left
        # It was left out of claims while full: claim again once a quarter of its
        # slots are free (one claim per freed slot would make claims of one).
        quarter = max(1, self._per_connection_cap // 4)
        if left == self._per_connection_cap - quarter and self._backlog:
            self._wake.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery_task_crashed", error=repr(task.exception()))
        # With a backlog, claim again once a quarter of the slots are free: one
        # claim per finished send would make batches of one.
        free = self._max_inflight - len(self._tasks)
        if self._backlog and (free >= max(1, self._max_inflight // 4) or not self._tasks):
            self._wake.set()

    async def _deliver(self, delivery: Claimed) -> None:
        try:
            target = await self._directory.target(delivery.connection_id)
            now = self._clock.now_ms()
            if target is None or not target.active:
                reason = "connection deleted" if target is None else "connection inactive"
                if target is not None and target.inactive_reason:
                    reason += f" ({target.inactive_reason})"
                result = AttemptResult(None, reason, 0, None, refused=True)
            else:
                result = await self._sender.send(target, delivery, now)
        finally:
            self._connection_done(delivery.connection_id)
        done_ms = self._clock.now_ms()
        status, next_at, last_error, disable = decide(
            attempts_before=delivery.schedule_attempts,
            status_code=result.status_code,
            error=result.error,
            refused=result.refused,
            retry_after_s=result.retry_after_s,
            now_ms=done_ms,
            schedule_s=self._schedule_s,
            rng=self._rng,
        )
        outcome = Outcome(
            rule_event_id=delivery.rule_event_id,
            event_id=delivery.event_id,
            connection_id=delivery.connection_id,
            endpoint_ok=None if result.refused else status == "completed",
            status=status,
            next_attempt_at_ms=next_at,
            last_error=last_error,
            completed_at_ms=done_ms if status in ("completed", "failed") else None,
            attempt=Attempt(
                id=new_id(),
                rule_event_id=delivery.rule_event_id,
                attempted_at_ms=now,
                duration_ms=result.duration_ms,
                status_code=result.status_code,
                error=result.error,
                response_excerpt=result.excerpt,
                trigger=delivery.trigger,
            ),
        )
        disable_map = {delivery.connection_id: disable} if disable else None
        await self._writer.record([outcome], disable_map)
        if disable:
            self._directory.forget_connection(delivery.connection_id)
            log.warning("connection_disabled", connection=delivery.connection_id, reason=disable)
        if status == "failed":
            log.info(
                "delivery_failed",
                rule_event=delivery.rule_event_id,
                connection=delivery.connection_id,
                error=last_error,
            )

    async def stop(self, grace_s: float) -> list[str]:
        """Stop claiming, give in-flight sends `grace_s`, cancel the rest.

        Returns the ids of cancelled deliveries: the caller releases them after
        the writer has drained, so a finished outcome is never overwritten.
        """
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
        cancelled = [d.rule_event_id for t, d in self._tasks.items() if not t.done()]
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        return cancelled
