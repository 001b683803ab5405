"""SQLite `Store`: one write connection behind a lock, one read connection (WAL).

Writes are serialised on one connection because SQLite has one writer anyway;
the lock keeps a group commit's statements from interleaving with a claim or a
configuration change. Reads go to a second connection, which WAL lets run
while a write transaction is open.
"""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar

import aiosqlite
import msgspec

from meshes_gateway.ids import uuid7_floor
from meshes_gateway.storage import queries
from meshes_gateway.storage import rows as to
from meshes_gateway.storage.base import DuplicateName, StoreError
from meshes_gateway.storage.queries import page
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
    Outcome,
    Page,
    PublishableKey,
    Rule,
    RuleEvent,
    RuleFilter,
    Workspace,
    WriteBatch,
)
from meshes_gateway.storage.rows import (
    ATTEMPT_COLS,
    CONNECTION_COLS,
    EVENT_COLS,
    IDEMPOTENCY_COLS,
    PUBKEY_COLS,
    RULE_COLS,
    RULE_EVENT_COLS,
    WORKSPACE_COLS,
    json_encode,
)
from meshes_gateway.storage.sqlite.migrate import migrate
from meshes_gateway.storage.tallies import (
    event_deltas,
    failing_streaks,
    within_room,
)

_CHUNK = 500
T = TypeVar("T")
# A claim reads this many due rows per free slot, so that the rows of a
# connection with little room left hide fewer of the others' behind them.
CANDIDATES_PER_SLOT = 4


def _exclusive_lock(path: Path) -> IO[bytes]:
    """Hold an exclusive lock so a second gateway cannot open the same database file."""
    handle = path.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(f"{path.parent} is in use by another gateway process") from None
    return handle


def _refresh_events(db: sqlite3.Connection, event_ids: list[str]) -> None:
    """Recompute the stored status and counts of these events from their rule events."""
    for start in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[start : start + _CHUNK]
        db.execute(queries.refresh_events(f"IN ({_marks(len(chunk))})"), chunk)


def _write_batch(db: sqlite3.Connection, batch: WriteBatch) -> None:
    """Everything one group commit writes (inside `_atomically`'s transaction)."""
    if batch.events:
        db.executemany(
            f"INSERT INTO events ({EVENT_COLS}) VALUES ({_marks(13)})",
            [msgspec.structs.astuple(e) for e in batch.events],
        )
    if batch.rule_events:
        db.executemany(
            f"INSERT INTO rule_events ({RULE_EVENT_COLS}) VALUES ({_marks(15)})",
            [msgspec.structs.astuple(r) for r in batch.rule_events],
        )
    if batch.idempotency:
        # An expired key may still be on disk until the purge runs: replace it.
        db.executemany(
            "INSERT OR REPLACE INTO idempotency_keys (workspace_id, key,"
            " request_digest, status, body, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
            [msgspec.structs.astuple(i) for i in batch.idempotency],
        )
    if batch.outcomes:
        _record_outcomes(db, batch.outcomes)
    if batch.disable_connections:
        _disable(db, batch.disable_connections, batch.now_ms)


def _record_outcomes(db: sqlite3.Connection, outcomes: list[Outcome]) -> None:
    applied: list[tuple[str, str]] = []
    for start in range(0, len(outcomes), _CHUNK):
        chunk = outcomes[start : start + _CHUNK]
        # Only a row still under our claim moves on: a stale outcome (its lease ran
        # out and it was claimed again) must not overwrite the newer claim's state.
        # RETURNING says which rows did move, for the event counters below.
        applied += db.execute(
            "UPDATE rule_events SET status = v.column2, attempt_count = attempt_count + 1,"
            " schedule_attempts = schedule_attempts + 1, trigger = 'scheduled',"
            " next_attempt_at_ms = v.column3, last_error = v.column4,"
            " completed_at_ms = v.column5, lease_until_ms = NULL"
            f" FROM (VALUES {','.join(['(?, ?, ?, ?, ?)'] * len(chunk))}) AS v"
            " WHERE rule_events.id = v.column1 AND rule_events.status = 'processing'"
            " RETURNING rule_events.event_id, rule_events.status",
            [
                value
                for o in chunk
                for value in (
                    o.rule_event_id,
                    o.status,
                    o.next_attempt_at_ms,
                    o.last_error,
                    o.completed_at_ms,
                )
            ],
        ).fetchall()
    db.executemany(
        f"INSERT INTO attempts ({ATTEMPT_COLS}) VALUES ({_marks(8)})",
        [msgspec.structs.astuple(o.attempt) for o in outcomes],
    )
    streaks = failing_streaks(outcomes)
    if streaks:
        db.executemany(
            "UPDATE connections SET failing_since_ms ="
            " CASE WHEN ? IS NULL THEN NULL ELSE COALESCE(failing_since_ms, ?) END"
            " WHERE id = ?",
            [(since, since, cid) for cid, since in streaks.items()],
        )
    _count_outcomes(db, event_deltas(applied, outcomes))


def _count_outcomes(db: sqlite3.Connection, deltas: list[tuple[str, int, int, int | None]]) -> None:
    """Move the events' counters and status by the deliveries that just settled.

    Incremental on this hot path (an outcome only ever leaves `processing`);
    the rarer paths that move deliveries backwards (replay, disabling)
    recompute with `_refresh_events` instead.
    """
    db.executemany(
        "UPDATE events SET completed_count = completed_count + ?1,"
        " failed_count = failed_count + ?2,"
        " status = CASE"
        "   WHEN completed_count + ?1 >= total_rules THEN 'completed'"
        "   WHEN completed_count + failed_count + ?1 + ?2 >= total_rules THEN 'failed'"
        "   ELSE 'processing' END,"
        " completed_at_ms = CASE"
        "   WHEN completed_count + failed_count + ?1 + ?2 >= total_rules THEN ?3 END"
        " WHERE id = ?4",
        [(c, f, done, event_id) for event_id, c, f, done in deltas],
    )


def _disable(db: sqlite3.Connection, reasons: dict[str, str], now_ms: int) -> None:
    """Disable connections and dead-letter their queued deliveries (replayable later)."""
    db.executemany(
        "UPDATE connections SET active = 0, inactive_reason = ? WHERE id = ?",
        [(reason, cid) for cid, reason in reasons.items()],
    )
    touched: set[str] = set()
    for cid, reason in reasons.items():
        rows = db.execute(
            "UPDATE rule_events SET status = 'failed', lease_until_ms = NULL,"
            " completed_at_ms = ?, last_error = ?"
            " WHERE connection_id = ? AND status = 'pending' RETURNING event_id",
            (now_ms, f"connection disabled ({reason})", cid),
        ).fetchall()
        touched.update(row[0] for row in rows)
    _refresh_events(db, list(touched))


def _claim(
    db: sqlite3.Connection,
    now_ms: int,
    limit: int,
    lease_until_ms: int,
    room: Mapping[str, int],
    per_connection: int,
) -> list[Claimed]:
    """Lease due pending deliveries that fit their connections' room; read their events."""
    excluded = [c for c, free in room.items() if free <= 0]
    candidates = db.execute(
        "SELECT id, connection_id FROM rule_events"
        " WHERE status = 'pending' AND next_attempt_at_ms <= ?"
        f" AND connection_id NOT IN ({_marks(len(excluded))})"
        " ORDER BY next_attempt_at_ms LIMIT ?",
        (now_ms, *excluded, limit * CANDIDATES_PER_SLOT),
    ).fetchall()
    ids = within_room(candidates, room, per_connection, limit)
    claimed = db.execute(
        "UPDATE rule_events SET status = 'processing', lease_until_ms = ?,"
        " started_at_ms = COALESCE(started_at_ms, ?)"
        f" WHERE id IN ({_marks(len(ids))})"
        " RETURNING id, event_id, workspace_id, rule_id, connection_id,"
        " attempt_count, schedule_attempts, trigger",
        (lease_until_ms, now_ms, *ids),
    ).fetchall()
    if not claimed:
        return []
    event_ids = list({row[1] for row in claimed})
    events = {
        row[0]: row
        for row in db.execute(
            "SELECT id, event, resource, resource_id, payload, created_at_ms FROM events"
            f" WHERE id IN ({_marks(len(event_ids))})",
            event_ids,
        )
    }
    return [
        Claimed(
            rule_event_id=row[0],
            event_id=row[1],
            workspace_id=row[2],
            rule_id=row[3],
            connection_id=row[4],
            attempt_count=row[5],
            schedule_attempts=row[6],
            trigger=row[7],
            event=ev[1],
            resource=ev[2],
            resource_id=ev[3],
            payload=ev[4],
            event_created_at_ms=ev[5],
        )
        for row in claimed
        if (ev := events.get(row[1])) is not None
    ]


def _id(record: Any) -> str:
    return str(record.id)


def _marks(count: int) -> str:
    return ",".join("?" * count)


class SqliteStore:
    """The embedded backend: a WAL database file with `synchronous=FULL` by default."""

    # One process owns the file: idempotency and rate limits can live in memory.
    shared = False

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self._path = path
        self._synchronous = synchronous
        self._w: aiosqlite.Connection | None = None
        self._r: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._lock_file: IO[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _exclusive_lock(self._path.with_name(self._path.name + ".lock"))
        self._w = await self._connect()
        await migrate(self._w)
        self._r = await self._connect()
        # One process owns this file (the lock above), so a delivery still marked
        # processing was in flight in a process that died: deliver it again now
        # rather than after its lease runs out.
        await self._one_write(
            "UPDATE rule_events SET status = 'pending', lease_until_ms = NULL"
            " WHERE status = 'processing'",
            (),
        )

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self._path, isolation_level=None)
        await conn.executescript(
            "PRAGMA journal_mode=WAL;"
            f"PRAGMA synchronous={self._synchronous};"
            "PRAGMA foreign_keys=ON;"
            "PRAGMA busy_timeout=5000;"
            "PRAGMA temp_store=MEMORY;"
        )
        return conn

    def subscribe(self, on_work: Callable[[], None], on_config: Callable[[], None]) -> None:
        """No other process writes this file: nothing to be told about."""

    async def is_leader(self) -> bool:
        return True

    async def close(self) -> None:
        for conn in (self._r, self._w):
            if conn is not None:
                await conn.close()
        self._r = self._w = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def _writer(self) -> aiosqlite.Connection:
        if self._w is None:
            raise StoreError("store is not open")
        return self._w

    @property
    def _reader(self) -> aiosqlite.Connection:
        if self._r is None:
            raise StoreError("store is not open")
        return self._r

    async def _atomically(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one IMMEDIATE transaction on the write connection, in one thread hop.

        A batch is several statements; awaiting each through aiosqlite would cost
        a round trip to its thread per statement (profiles showed it). aiosqlite
        has no public way to run a function on its thread, so this is the one
        place that uses its `_execute` (pinned: aiosqlite < 0.23).
        """

        def run() -> T:
            db = self._writer._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        async with self._write_lock:
            try:
                result: T = await self._writer._execute(run)  # type: ignore[no-untyped-call]
            except sqlite3.Error as exc:
                raise StoreError(f"write failed: {exc}") from exc
            return result

    async def _one_write(self, sql: str, params: Iterable[Any]) -> int:
        """One statement in its own transaction; returns the rows it changed."""
        async with self._write_lock:
            try:
                cursor = await self._writer.execute(sql, tuple(params))
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc):
                    raise DuplicateName(str(exc)) from exc
                raise StoreError(str(exc)) from exc
            return cursor.rowcount

    async def _fetch(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def ping(self) -> None:
        try:
            await self._one_write(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('ping', '1')", ()
            )
        except (sqlite3.Error, StoreError) as exc:
            raise StoreError(f"storage is not writable: {exc}") from exc

    # -- organization and API keys ---------------------------------------------
    async def get_meta(self, key: str) -> str | None:
        rows = await self._fetch("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def claim_meta(self, key: str, value: str) -> str:
        await self._one_write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value)
        )
        return str((await self._fetch("SELECT value FROM meta WHERE key = ?", (key,)))[0][0])

    async def put_api_key(self, key: ApiKey) -> None:
        await self._one_write(
            "INSERT OR REPLACE INTO api_keys (access_key, secret_enc, created_at_ms)"
            " VALUES (?, ?, ?)",
            (key.access_key, key.secret_enc, key.created_at_ms),
        )

    async def get_api_key(self, access_key: str) -> ApiKey | None:
        rows = await self._fetch(
            "SELECT access_key, secret_enc, created_at_ms FROM api_keys WHERE access_key = ?",
            (access_key,),
        )
        if not rows:
            return None
        return ApiKey(access_key=rows[0][0], secret_enc=rows[0][1], created_at_ms=rows[0][2])

    # -- workspaces and publishable keys -----------------------------------------
    async def create_workspace(self, workspace: Workspace) -> None:
        await self._one_write(
            f"INSERT INTO workspaces ({WORKSPACE_COLS}) VALUES (?, ?, ?, ?, ?)",
            msgspec.structs.astuple(workspace),
        )

    async def update_workspace(self, workspace: Workspace) -> None:
        await self._one_write(
            "UPDATE workspaces SET name = ?, description = ?, updated_at_ms = ? WHERE id = ?",
            (workspace.name, workspace.description, workspace.updated_at_ms, workspace.id),
        )

    async def delete_workspace(self, workspace_id: str) -> bool:
        return await self._one_write("DELETE FROM workspaces WHERE id = ?", (workspace_id,)) > 0

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        rows = await self._fetch(
            f"SELECT {WORKSPACE_COLS} FROM workspaces WHERE id = ?", (workspace_id,)
        )
        return to.workspace(rows[0]) if rows else None

    async def list_workspaces(self, limit: int, after: str | None) -> Page:
        sql, params = queries.workspaces_query(limit, after)
        return page([to.workspace(r) for r in await self._fetch(sql, params)], limit, _id)

    async def add_publishable_key(self, key: PublishableKey) -> None:
        await self._one_write(
            f"INSERT INTO publishable_keys ({PUBKEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            msgspec.structs.astuple(key),
        )

    async def revoke_publishable_keys(
        self, workspace_id: str, key_id: str | None, now_ms: int
    ) -> int:
        return await self._one_write(
            "UPDATE publishable_keys SET revoked_at_ms = ?"
            " WHERE workspace_id = ? AND (? IS NULL OR id = ?) AND revoked_at_ms IS NULL",
            (now_ms, workspace_id, key_id, key_id),
        )

    async def get_publishable_key(self, key_id: str) -> PublishableKey | None:
        rows = await self._fetch(
            f"SELECT {PUBKEY_COLS} FROM publishable_keys WHERE id = ?", (key_id,)
        )
        return to.pubkey(rows[0]) if rows else None

    async def active_publishable_key(self, workspace_id: str) -> PublishableKey | None:
        rows = await self._fetch(
            f"SELECT {PUBKEY_COLS} FROM publishable_keys"
            " WHERE workspace_id = ? AND revoked_at_ms IS NULL ORDER BY id DESC LIMIT 1",
            (workspace_id,),
        )
        return to.pubkey(rows[0]) if rows else None

    # -- connections and rules ---------------------------------------------------
    async def create_connection(self, connection: Connection) -> None:
        row = list(msgspec.structs.astuple(connection))
        row[4] = json_encode(connection.metadata).decode()
        await self._one_write(
            f"INSERT INTO connections ({CONNECTION_COLS}) VALUES ({_marks(13)})", row
        )

    async def update_connection(self, connection: Connection) -> None:
        await self._one_write(queries.UPDATE_CONNECTION, queries.connection_update(connection))

    async def delete_connection(self, connection_id: str) -> None:
        await self._one_write("DELETE FROM connections WHERE id = ?", (connection_id,))

    async def get_connection(self, connection_id: str) -> Connection | None:
        rows = await self._fetch(
            f"SELECT {CONNECTION_COLS} FROM connections WHERE id = ?", (connection_id,)
        )
        return to.connection(rows[0]) if rows else None

    async def list_connections(
        self, workspace_id: str | None, limit: int, after: str | None
    ) -> Page:
        sql, params = queries.connections_query(workspace_id, limit, after)
        return page([to.connection(r) for r in await self._fetch(sql, params)], limit, _id)

    async def create_rule(self, rule: Rule) -> None:
        row = list(msgspec.structs.astuple(rule))
        row[7] = json_encode(rule.metadata).decode()
        await self._one_write(f"INSERT INTO rules ({RULE_COLS}) VALUES ({_marks(13)})", row)

    async def delete_rule(self, rule_id: str) -> None:
        await self._one_write("DELETE FROM rules WHERE id = ?", (rule_id,))

    async def get_rule(self, rule_id: str) -> Rule | None:
        rows = await self._fetch(f"SELECT {RULE_COLS} FROM rules WHERE id = ?", (rule_id,))
        return to.rule(rows[0]) if rows else None

    async def list_rules(
        self,
        workspace_id: str | None,
        connection_id: str | None,
        limit: int,
        after: str | None,
        f: RuleFilter | None = None,
    ) -> Page:
        sql, params = queries.rules_query(
            workspace_id, connection_id, f or RuleFilter(), limit, after
        )
        return page([to.rule(r) for r in await self._fetch(sql, params)], limit, _id)

    async def rules_of_workspace(self, workspace_id: str) -> list[Rule]:
        rows = await self._fetch(
            f"SELECT {RULE_COLS} FROM rules WHERE workspace_id = ? ORDER BY id", (workspace_id,)
        )
        return [to.rule(r) for r in rows]

    # -- ingest and delivery -----------------------------------------------------
    async def get_idempotency(self, workspace_id: str, key: str) -> IdempotencyRecord | None:
        rows = await self._fetch(
            f"SELECT {IDEMPOTENCY_COLS} FROM idempotency_keys WHERE workspace_id = ? AND key = ?",
            (workspace_id, key),
        )
        return to.idempotency(rows[0]) if rows else None

    # Reservations and shared token buckets exist for replicas sharing a
    # database; one process owns a SQLite file, so the gateway keeps both in
    # memory here (see `shared`). They are implemented for the contract suite.
    async def reserve_idempotency(
        self, record: IdempotencyRecord, expired_before_ms: int, stale_before_ms: int
    ) -> IdempotencyRecord | None:
        def reserve(db: sqlite3.Connection) -> bool:
            return bool(
                db.execute(
                    f"INSERT INTO idempotency_keys AS k ({IDEMPOTENCY_COLS})"
                    " VALUES (?, ?, ?, 0, x'', ?)"
                    " ON CONFLICT (workspace_id, key) DO UPDATE SET"
                    " request_digest = excluded.request_digest, status = 0, body = excluded.body,"
                    " created_at_ms = excluded.created_at_ms"
                    " WHERE k.created_at_ms < ? OR (k.status = 0 AND k.created_at_ms < ?)"
                    " RETURNING 1",
                    (
                        record.workspace_id,
                        record.key,
                        record.request_digest,
                        record.created_at_ms,
                        expired_before_ms,
                        stale_before_ms,
                    ),
                ).fetchall()
            )

        if await self._atomically(reserve):
            return None
        return await self.get_idempotency(record.workspace_id, record.key)

    async def drop_reservation(self, workspace_id: str, key: str, reserved_at_ms: int) -> None:
        await self._one_write(
            "DELETE FROM idempotency_keys"
            " WHERE workspace_id = ? AND key = ? AND status = 0 AND created_at_ms = ?",
            (workspace_id, key, reserved_at_ms),
        )

    async def take_tokens(
        self, key: str, count: int, rate_per_ms: float, burst: float, now_ms: int
    ) -> float:
        def take(db: sqlite3.Connection) -> float:
            available = db.execute(
                "SELECT min(?, tokens + max(0, ? - at_ms) * ?) FROM rate_buckets WHERE key = ?",
                (burst, now_ms, rate_per_ms, key),
            ).fetchone()
            tokens = burst if available is None else float(available[0])
            if count > tokens:
                return max(min(float(count), burst) - tokens, 1.0)
            db.execute(
                "INSERT OR REPLACE INTO rate_buckets (key, tokens, at_ms) VALUES (?, ?, ?)",
                (key, tokens - count, now_ms),
            )
            return 0.0

        return await self._atomically(take)

    async def write(self, batch: WriteBatch) -> None:
        await self._atomically(partial(_write_batch, batch=batch))

    async def claim_due(
        self,
        now_ms: int,
        limit: int,
        lease_until_ms: int,
        room: Mapping[str, int],
        per_connection: int | None = None,
    ) -> list[Claimed]:
        return await self._atomically(
            partial(
                _claim,
                now_ms=now_ms,
                limit=limit,
                lease_until_ms=lease_until_ms,
                room=room,
                per_connection=per_connection or limit,
            )
        )

    async def release(self, rule_event_ids: Sequence[str], now_ms: int) -> None:
        if not rule_event_ids:
            return
        params = [(now_ms, rid) for rid in rule_event_ids]
        await self._atomically(
            lambda db: db.executemany(
                "UPDATE rule_events SET status = 'pending', lease_until_ms = NULL,"
                " next_attempt_at_ms = ? WHERE id = ? AND status = 'processing'",
                params,
            )
        )

    async def release_expired(self, now_ms: int) -> int:
        return await self._one_write(
            "UPDATE rule_events SET status = 'pending', lease_until_ms = NULL,"
            " next_attempt_at_ms = ? WHERE status = 'processing' AND lease_until_ms <= ?",
            (now_ms, now_ms),
        )

    # -- history -----------------------------------------------------------------
    async def get_event(self, event_id: str) -> Event | None:
        rows = await self._fetch(f"SELECT {EVENT_COLS} FROM events WHERE id = ?", (event_id,))
        return to.event(rows[0]) if rows else None

    async def rule_events_of(self, event_ids: Sequence[str]) -> list[RuleEvent]:
        if not event_ids:
            return []
        rows = await self._fetch(
            f"SELECT {RULE_EVENT_COLS} FROM rule_events"
            f" WHERE event_id IN ({_marks(len(event_ids))}) ORDER BY id",
            event_ids,
        )
        return [to.rule_event(r) for r in rows]

    async def attempts_of(self, rule_event_id: str) -> list[Attempt]:
        rows = await self._fetch(
            f"SELECT {ATTEMPT_COLS} FROM attempts WHERE rule_event_id = ? ORDER BY id",
            (rule_event_id,),
        )
        return [to.attempt(r) for r in rows]

    async def purge_idempotency(self, before_ms: int) -> int:
        return await self._one_write(
            "DELETE FROM idempotency_keys WHERE created_at_ms < ?", (before_ms,)
        )

    # -- history listings and replay ---------------------------------------------
    # Public so tests can check their query plans.
    events_query = staticmethod(queries.events_query)
    deliveries_query = staticmethod(queries.deliveries_query)

    async def list_events(self, f: EventFilter, limit: int, after: str | None) -> Page:
        sql, params = queries.events_query(f, limit, after)
        return page([to.event(r) for r in await self._fetch(sql, params)], limit, _id)

    async def list_deliveries(self, f: DeliveryFilter, limit: int, after: str | None) -> Page:
        sql, params = queries.deliveries_query(f, limit, after)
        rows = await self._fetch(sql, params)
        return page([to.delivery(r) for r in rows], limit, lambda d: d.rule_event.id)

    async def get_delivery(self, rule_event_id: str) -> Delivery | None:
        page = await self.list_deliveries(DeliveryFilter(id=rule_event_id), 1, None)
        return page.records[0] if page.records else None

    async def requeue(self, rule_event_ids: Sequence[str], now_ms: int) -> list[str]:
        """Settled deliveries back to pending, due now, next attempt marked manual.

        Pending or in-flight ones are left alone, so a replay never duplicates
        work already queued. Returns the ids that were queued.
        """
        if not rule_event_ids:
            return []
        ids = list(rule_event_ids)

        def requeue(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "UPDATE rule_events SET status = 'pending', next_attempt_at_ms = ?,"
                " trigger = 'manual', schedule_attempts = 0, completed_at_ms = NULL,"
                " lease_until_ms = NULL"
                f" WHERE id IN ({_marks(len(ids))})"
                " AND status IN ('failed', 'completed') RETURNING id, event_id",
                (now_ms, *ids),
            ).fetchall()
            _refresh_events(db, list({r[1] for r in rows}))
            return [r[0] for r in rows]

        return await self._atomically(requeue)

    async def requeue_failed(
        self, f: DeliveryFilter, now_ms: int, limit: int
    ) -> tuple[int, str | None]:
        """One bounded batch of a bulk replay of failed deliveries, in id order.

        Returns (queued, last id seen); pass the last id back as `f.after_id`'s
        successor to continue, so a delivery that fails again at once is never
        queued twice by the same bulk replay.
        """
        sql, params = queries.requeue_failed(f, now_ms, limit)

        def requeue(db: sqlite3.Connection) -> list[Any]:
            rows = db.execute(sql, params).fetchall()
            _refresh_events(db, list({r[1] for r in rows}))
            return rows

        rows = await self._atomically(requeue)
        last = max((r[0] for r in rows), default=None)
        return len(rows), last

    async def disable_connections(self, reasons: dict[str, str], now_ms: int) -> None:
        await self._atomically(partial(_disable, reasons=reasons, now_ms=now_ms))

    async def failing_connections(self, since_before_ms: int) -> list[str]:
        rows = await self._fetch(
            "SELECT id FROM connections WHERE failing_since_ms <= ? AND active = 1",
            (since_before_ms,),
        )
        return [r[0] for r in rows]

    async def purge_history(self, before_ms: int, limit: int) -> int:
        # Events with a delivery still pending or in flight are kept: retention
        # must never drop work that is owed (rule events and attempts cascade).
        return await self._one_write(
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e"
            " WHERE e.id < ? AND NOT EXISTS (SELECT 1 FROM rule_events r"
            "   WHERE r.event_id = e.id AND r.status IN ('pending', 'processing'))"
            " ORDER BY e.id LIMIT ?)",
            (uuid7_floor(before_ms), limit),
        )

    async def count_rule_events(self, status: str) -> int:
        rows = await self._fetch("SELECT count(*) FROM rule_events WHERE status = ?", (status,))
        return int(rows[0][0])
