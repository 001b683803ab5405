"""The `Store` protocol: the one domain-level interface to persistence.

Handlers and the engine only ever call these methods; a backend (SQLite now,
PostgreSQL for scale-out) owns its SQL, its migrations and its transactions.
Batch methods take whole batches so a backend can spend one round trip per
batch rather than one per row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from meshes_gateway.storage.records import (
    ApiKey,
    Attempt,
    Claimed,
    Connection,
    Delivery,
    DeliveryFilter,
    Event,
    EventFilter,
    IdempotencyRecord,
    Page,
    PublishableKey,
    Rule,
    RuleEvent,
    RuleFilter,
    Workspace,
    WriteBatch,
)


class StoreError(Exception):
    """The backend could not do what was asked (disk full, database gone)."""


class DuplicateName(StoreError):
    """A unique name is taken."""


class Store(Protocol):
    """Persistence for configuration, events, deliveries and attempts."""

    # Whether other gateway processes share this storage (PostgreSQL replicas):
    # if so, idempotency keys and rate limits must live in it, not in memory.
    shared: bool

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def ping(self) -> None:
        """Raise `StoreError` unless storage is writable."""

    def subscribe(self, on_work: Callable[[], None], on_config: Callable[[], None]) -> None:
        """Be told when another process made deliveries due or changed configuration."""

    async def is_leader(self) -> bool:
        """Whether this process runs the jobs that must run once (sweeps, purges)."""

    # -- organization and API keys ---------------------------------------------
    async def get_meta(self, key: str) -> str | None: ...
    async def claim_meta(self, key: str, value: str) -> str:
        """Store `value` unless the key is set; returns what is stored (first writer wins)."""

    async def put_api_key(self, key: ApiKey) -> None: ...
    async def get_api_key(self, access_key: str) -> ApiKey | None: ...

    # -- workspaces and publishable keys -----------------------------------------
    async def create_workspace(self, workspace: Workspace) -> None: ...
    async def update_workspace(self, workspace: Workspace) -> None: ...
    async def delete_workspace(self, workspace_id: str) -> bool: ...
    async def get_workspace(self, workspace_id: str) -> Workspace | None: ...
    async def list_workspaces(self, limit: int, after: str | None) -> Page: ...
    async def add_publishable_key(self, key: PublishableKey) -> None: ...
    async def revoke_publishable_keys(
        self, workspace_id: str, key_id: str | None, now_ms: int
    ) -> int: ...
    async def get_publishable_key(self, key_id: str) -> PublishableKey | None: ...
    async def active_publishable_key(self, workspace_id: str) -> PublishableKey | None: ...

    # -- connections and rules ---------------------------------------------------
    async def create_connection(self, connection: Connection) -> None: ...
    async def update_connection(self, connection: Connection) -> None: ...
    async def delete_connection(self, connection_id: str) -> None: ...
    async def get_connection(self, connection_id: str) -> Connection | None: ...
    async def list_connections(
        self, workspace_id: str | None, limit: int, after: str | None
    ) -> Page: ...
    async def create_rule(self, rule: Rule) -> None: ...
    async def delete_rule(self, rule_id: str) -> None: ...
    async def get_rule(self, rule_id: str) -> Rule | None: ...
    async def list_rules(
        self,
        workspace_id: str | None,
        connection_id: str | None,
        limit: int,
        after: str | None,
        f: RuleFilter | None = None,
    ) -> Page: ...
    async def rules_of_workspace(self, workspace_id: str) -> list[Rule]: ...

    # -- ingest and delivery -----------------------------------------------------
    async def get_idempotency(self, workspace_id: str, key: str) -> IdempotencyRecord | None: ...
    async def reserve_idempotency(
        self, record: IdempotencyRecord, expired_before_ms: int, stale_before_ms: int
    ) -> IdempotencyRecord | None:
        """Reserve the key (status 0) and return None, or return the record holding it.

        An answer created before `expired_before_ms`, or a reservation made
        before `stale_before_ms` (its process died), is taken over.
        """

    async def drop_reservation(self, workspace_id: str, key: str, reserved_at_ms: int) -> None:
        """Drop the reservation made at `reserved_at_ms` (not an answer, nor a later one)."""

    async def take_tokens(
        self, key: str, count: int, rate_per_ms: float, burst: float, now_ms: int
    ) -> float:
        """Spend `count` tokens of the key's bucket: 0 if granted, else the tokens missing."""

    async def write(self, batch: WriteBatch) -> None:
        """Insert events, rule events and idempotency answers and record outcomes, atomically."""

    async def claim_due(
        self,
        now_ms: int,
        limit: int,
        lease_until_ms: int,
        room: Mapping[str, int],
        per_connection: int | None = None,
    ) -> list[Claimed]:
        """Lease up to `limit` due pending deliveries (`processing`) and return them.

        At most `room[c]` for a connection in `room` (none if 0), at most
        `per_connection` for any other (no limit when None).
        """

    async def release(self, rule_event_ids: Sequence[str], now_ms: int) -> None:
        """Hand claimed deliveries back as pending, due now (shutdown, over-claim)."""

    async def release_expired(self, now_ms: int) -> int:
        """Make deliveries whose lease ran out (a crashed sender) pending again."""

    # -- history -----------------------------------------------------------------
    async def get_event(self, event_id: str) -> Event | None: ...
    async def rule_events_of(self, event_ids: Sequence[str]) -> list[RuleEvent]: ...
    async def attempts_of(self, rule_event_id: str) -> list[Attempt]: ...
    async def list_events(self, f: EventFilter, limit: int, after: str | None) -> Page:
        """Events newest first (records: `Event` without payload)."""

    async def list_deliveries(self, f: DeliveryFilter, limit: int, after: str | None) -> Page:
        """Rule events newest first (records: `Delivery`)."""

    async def get_delivery(self, rule_event_id: str) -> Delivery | None: ...
    async def requeue(self, rule_event_ids: Sequence[str], now_ms: int) -> list[str]:
        """Settled deliveries back to pending (manual); returns the ids queued."""

    async def requeue_failed(
        self, f: DeliveryFilter, now_ms: int, limit: int
    ) -> tuple[int, str | None]:
        """One batch of a bulk replay of failed deliveries: (queued, last id)."""

    async def disable_connections(self, reasons: dict[str, str], now_ms: int) -> None:
        """Disable connections; their pending deliveries become failed."""

    async def failing_connections(self, since_before_ms: int) -> list[str]:
        """Active connections whose failing streak started at or before the given time."""

    async def purge_idempotency(self, before_ms: int) -> int: ...
    async def purge_history(self, before_ms: int, limit: int) -> int:
        """Delete up to `limit` settled events created before `before_ms`, with their deliveries."""

    async def count_rule_events(self, status: str) -> int: ...
