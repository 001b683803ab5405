"""PostgreSQL `Store`: any number of gateway replicas over one database.

What differs from SQLite, and why:

- Claims take rows `FOR UPDATE SKIP LOCKED`, so replicas claiming at once
  split the due rows between them instead of waiting on each other.
- Nothing is released at start-up: another replica may own a `processing`
  row. A dead replica's rows come back when their lease runs out, through the
  lease sweep that one replica (the advisory-lock leader) runs.
- Batches are written with `unnest` over column arrays: one statement per
  table per group commit, whatever the batch size.
- A control connection LISTENs for two notifications: `work` (deliveries
  became due elsewhere: claim now rather than at the next poll) and `config`
  (a replica changed configuration: drop cached keys, rules and targets). It
  also holds the leader's advisory lock, so leadership ends with the
  connection, which is how PostgreSQL notices a dead replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec
import structlog
from asyncpg.pool import PoolConnectionProxy

from meshes_gateway.ids import uuid7_floor
from meshes_gateway.storage import queries
from meshes_gateway.storage import rows as to
from meshes_gateway.storage.base import DuplicateName, StoreError
from meshes_gateway.storage.postgres.migrate import migrate
from meshes_gateway.storage.queries import numbered, page
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
from meshes_gateway.storage.tallies import (
    failing_streaks,
    within_room,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
# A deadlock between two replicas' group commits (both bumping the counters of
# one fanned-out event) aborts one of them; it is simply run again.
_ATTEMPTS_ON_DEADLOCK = 3
_RECONNECT_S = 1.0
_POOL_MAX = 10


def _insert_unnest(table: str, columns: str, types: str, extra: str = "") -> str:
    """`INSERT ... SELECT * FROM unnest(?::t1[], ...)`: a whole batch in one statement."""
    arrays = ", ".join(f"?::{t}[]" for t in types.split())
    return f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}){extra}"


# The parts of a group commit. They are composed into one statement (data-
# modifying CTEs), which PostgreSQL runs as one implicit transaction: one round
# trip per batch, however many tables it touches. `?` marks are numbered once
# the statement is composed.
_INSERT_EVENTS = _insert_unnest(
    "events", EVENT_COLS, "text text text text text bytea text int8 text int4 int4 int4 int8"
)
_INSERT_RULE_EVENTS = _insert_unnest(
    "rule_events",
    RULE_EVENT_COLS,
    "text text text text text text int4 int8 text int8 int8 int8 text int4 int8",
)
_INSERT_ATTEMPTS = _insert_unnest(
    "attempts", ATTEMPT_COLS, "text text int8 int4 int4 text bytea text"
)
_UPSERT_IDEMPOTENCY = _insert_unnest(
    "idempotency_keys",
    IDEMPOTENCY_COLS,
    "text text bytea int4 bytea int8",
    " ON CONFLICT (workspace_id, key) DO UPDATE SET request_digest = excluded.request_digest,"
    " status = excluded.status, body = excluded.body, created_at_ms = excluded.created_at_ms",
)
# Only a row still under claim moves on: a stale outcome (its lease ran out and
# it was claimed again) must not overwrite the newer claim's state.
_APPLY_OUTCOMES = """
UPDATE rule_events r SET status = v.status, attempt_count = r.attempt_count + 1,
  schedule_attempts = r.schedule_attempts + 1, trigger = 'scheduled',
  next_attempt_at_ms = v.next_at, last_error = v.err, completed_at_ms = v.done,
  lease_until_ms = NULL
FROM unnest(?::text[], ?::text[], ?::int8[], ?::text[], ?::int8[])
  AS v(id, status, next_at, err, done)
WHERE r.id = v.id AND r.status = 'processing'
RETURNING r.event_id, r.status, r.completed_at_ms
"""
_FAILING_STREAKS = """
UPDATE connections c SET failing_since_ms =
  CASE WHEN v.since IS NULL THEN NULL ELSE coalesce(c.failing_since_ms, v.since) END
FROM unnest(?::text[], ?::int8[]) AS v(id, since) WHERE c.id = v.id
"""
# The events' counters move by the deliveries `applied` (the CTE above) settled.
_COUNT_OUTCOMES = """
UPDATE events e SET completed_count = e.completed_count + v.c,
  failed_count = e.failed_count + v.f,
  status = CASE
    WHEN e.completed_count + v.c >= e.total_rules THEN 'completed'
    WHEN e.completed_count + e.failed_count + v.c + v.f >= e.total_rules THEN 'failed'
    ELSE 'processing' END,
  completed_at_ms = CASE
    WHEN e.completed_count + e.failed_count + v.c + v.f >= e.total_rules THEN v.done END
FROM (
  SELECT event_id, count(*) FILTER (WHERE status = 'completed') AS c,
         count(*) FILTER (WHERE status = 'failed') AS f, max(completed_at_ms) AS done
  FROM applied GROUP BY event_id
) AS v
WHERE e.id = v.event_id
"""
_REFRESH_EVENTS = queries.refresh_events("= ANY($1::text[])")
_CANDIDATES = """
SELECT id, connection_id FROM rule_events
WHERE status = 'pending' AND next_attempt_at_ms <= $1 AND connection_id <> ALL($2::text[])
ORDER BY next_attempt_at_ms LIMIT $3
FOR UPDATE SKIP LOCKED
"""
_CLAIM = """
WITH claimed AS (
  UPDATE rule_events SET status = 'processing', lease_until_ms = $2,
    started_at_ms = coalesce(started_at_ms, $1)
  WHERE id = ANY($3::text[])
  RETURNING id, event_id, workspace_id, rule_id, connection_id, attempt_count,
    schedule_attempts, trigger
)
SELECT c.id, c.event_id, c.workspace_id, c.rule_id, c.connection_id, c.attempt_count,
  c.schedule_attempts, c.trigger, e.event, e.resource, e.resource_id, e.payload, e.created_at_ms
FROM claimed c JOIN events e ON e.id = c.event_id
"""


def _columns(records: Sequence[msgspec.Struct]) -> list[list[Any]]:
    """Records as one list per column, for `unnest`."""
    return [
        list(column) for column in zip(*(msgspec.structs.astuple(r) for r in records), strict=True)
    ]


def _key(schema: str, purpose: str) -> int:
    """A stable signed 64-bit advisory-lock key, distinct per schema and purpose."""
    digest = hashlib.blake2b(f"meshes-gateway:{schema}:{purpose}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def split_url(url: str) -> tuple[str, str]:
    """The DSN for asyncpg and the schema named by `?schema=` (default `public`).

    asyncpg would pass an unknown query parameter on as a server setting, so
    `schema` is taken out here and applied as the `search_path`.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for name, value in query if name == "schema"), "public")
    rest = [(name, value) for name, value in query if name != "schema"]
    # Lower case only: the name is used both quoted (CREATE SCHEMA) and in search_path.
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", schema):
        raise StoreError("?schema= takes lower-case letters, digits and underscores")
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


def _id(record: Any) -> str:
    return str(record.id)


class PostgresStore:
    """The scale-out backend: a connection pool, plus one control connection."""

    shared = True

    def __init__(self, url: str, pool_max: int = _POOL_MAX) -> None:
        self._dsn, self._schema = split_url(url)
        self._pool_max = pool_max
        self._pool: asyncpg.Pool | None = None
        self._work_channel = f"meshes_{self._schema}_work"
        self._config_channel = f"meshes_{self._schema}_config"
        self._leader_key = _key(self._schema, "leader")
        self._control: Conn | None = None
        self._control_lock = asyncio.Lock()
        self._control_task: asyncio.Task[None] | None = None
        self._leader = False
        self._on_work: Callable[[], None] = lambda: None
        self._on_config: Callable[[], None] = lambda: None

    # -- lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        settings = {"search_path": self._schema, "application_name": "meshes-gateway"}
        try:
            first = await asyncpg.connect(self._dsn, server_settings=settings)
            try:
                await migrate(first, self._schema, _key(self._schema, "migrate"))
            finally:
                await first.close()
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=2, max_size=self._pool_max, server_settings=settings
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot open the PostgreSQL database: {exc}") from exc
        self._control_task = asyncio.create_task(self._keep_control(settings), name="pg-control")

    async def close(self) -> None:
        if self._control_task is not None:
            self._control_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control_task
            self._control_task = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def subscribe(self, on_work: Callable[[], None], on_config: Callable[[], None]) -> None:
        """Callbacks for other replicas' notifications: work became due, config changed."""
        self._on_work = on_work
        self._on_config = on_config

    async def _keep_control(self, settings: dict[str, str]) -> None:
        """Keep a listening connection open; reconnect (and drop caches) when it is lost."""
        while True:
            lost = asyncio.Event()
            conn: asyncpg.Connection[asyncpg.Record] | None = None
            try:
                conn = await asyncpg.connect(self._dsn, server_settings=settings)
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                await conn.add_listener(self._work_channel, lambda *_: self._on_work())
                await conn.add_listener(self._config_channel, lambda *_: self._on_config())
                self._control = conn
                # Notifications sent while no listener was connected are lost:
                # whatever they said may have happened, so act as if it had.
                self._on_config()
                self._on_work()
                await lost.wait()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("postgres_control_connection_failed", error=str(exc))
            finally:
                self._control = None
                self._leader = False
                if conn is not None and not conn.is_closed():
                    # Closing drops the leader's advisory lock with the session.
                    await asyncio.shield(conn.close())
            await asyncio.sleep(_RECONNECT_S)

    async def is_leader(self) -> bool:
        """Whether this replica holds the advisory lock for jobs that must run once."""
        async with self._control_lock:
            conn = self._control
            if conn is None or conn.is_closed():
                self._leader = False
                return False
            if not self._leader:
                try:
                    self._leader = bool(
                        await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._leader_key)
                    )
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    return False
            return self._leader

    @property
    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def _tx(self, fn: Callable[[Conn], Awaitable[T]], transaction: bool = True) -> T:
        """Run `fn` in one transaction on a pooled connection; retried after a deadlock.

        `transaction=False` for a single statement, which is a transaction of
        its own (saving the BEGIN and COMMIT round trips).
        """
        for attempt in range(_ATTEMPTS_ON_DEADLOCK):
            try:
                async with self._p.acquire() as conn:
                    if not transaction:
                        return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
            except asyncpg.DeadlockDetectedError:
                if attempt == _ATTEMPTS_ON_DEADLOCK - 1:
                    raise StoreError("write failed: deadlock, retries exhausted") from None
            except asyncpg.UniqueViolationError as exc:
                raise DuplicateName(str(exc)) from exc
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StoreError(f"write failed: {exc}") from exc
        raise AssertionError("unreachable")

    async def _execute(self, sql: str, *args: Any, config: bool = False) -> int:
        """One statement (with a config notification if asked); returns the rows it changed."""

        async def run(conn: Conn) -> int:
            status = await conn.execute(sql, *args)
            if config:
                await conn.execute("SELECT pg_notify($1, '')", self._config_channel)
            return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0

        # The notification must commit with the change; a lone statement needs no BEGIN.
        return await self._tx(run, transaction=config)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self._p.fetch(sql, *args))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"read failed: {exc}") from exc

    async def ping(self) -> None:
        await self._execute(
            "INSERT INTO meta (key, value) VALUES ('ping', '1')"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )

    # -- organization and API keys ---------------------------------------------
    async def get_meta(self, key: str) -> str | None:
        rows = await self._fetch("SELECT value FROM meta WHERE key = $1", key)
        return str(rows[0][0]) if rows else None

    async def claim_meta(self, key: str, value: str) -> str:
        await self._execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, value
        )
        return str((await self._fetch("SELECT value FROM meta WHERE key = $1", key))[0][0])

    async def put_api_key(self, key: ApiKey) -> None:
        await self._execute(
            "INSERT INTO api_keys (access_key, secret_enc, created_at_ms) VALUES ($1, $2, $3)"
            " ON CONFLICT (access_key) DO UPDATE SET secret_enc = excluded.secret_enc,"
            " created_at_ms = excluded.created_at_ms",
            key.access_key,
            key.secret_enc,
            key.created_at_ms,
        )

    async def get_api_key(self, access_key: str) -> ApiKey | None:
        rows = await self._fetch(
            "SELECT access_key, secret_enc, created_at_ms FROM api_keys WHERE access_key = $1",
            access_key,
        )
        if not rows:
            return None
        r = rows[0]
        return ApiKey(access_key=r[0], secret_enc=bytes(r[1]), created_at_ms=r[2])

    # -- workspaces and publishable keys -----------------------------------------
    async def create_workspace(self, workspace: Workspace) -> None:
        await self._execute(
            f"INSERT INTO workspaces ({WORKSPACE_COLS}) VALUES ($1, $2, $3, $4, $5)",
            *msgspec.structs.astuple(workspace),
            config=True,
        )

    async def update_workspace(self, workspace: Workspace) -> None:
        await self._execute(
            "UPDATE workspaces SET name = $1, description = $2, updated_at_ms = $3 WHERE id = $4",
            workspace.name,
            workspace.description,
            workspace.updated_at_ms,
            workspace.id,
            config=True,
        )

    async def delete_workspace(self, workspace_id: str) -> bool:
        deleted = await self._execute(
            "DELETE FROM workspaces WHERE id = $1", workspace_id, config=True
        )
        return deleted > 0

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        rows = await self._fetch(
            f"SELECT {WORKSPACE_COLS} FROM workspaces WHERE id = $1", workspace_id
        )
        return to.workspace(rows[0]) if rows else None

    async def _page(
        self, convert: Callable[[Any], Any], query: queries.Query, limit: int, key: Any = _id
    ) -> Page:
        sql, params = query
        return page([convert(r) for r in await self._fetch(numbered(sql), *params)], limit, key)

    async def list_workspaces(self, limit: int, after: str | None) -> Page:
        return await self._page(to.workspace, queries.workspaces_query(limit, after), limit)

    async def add_publishable_key(self, key: PublishableKey) -> None:
        await self._execute(
            f"INSERT INTO publishable_keys ({PUBKEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            *msgspec.structs.astuple(key),
            config=True,
        )

    async def revoke_publishable_keys(
        self, workspace_id: str, key_id: str | None, now_ms: int
    ) -> int:
        return await self._execute(
            "UPDATE publishable_keys SET revoked_at_ms = $1"
            " WHERE workspace_id = $2 AND ($3::text IS NULL OR id = $3)"
            " AND revoked_at_ms IS NULL",
            now_ms,
            workspace_id,
            key_id,
            config=True,
        )

    async def get_publishable_key(self, key_id: str) -> PublishableKey | None:
        rows = await self._fetch(
            f"SELECT {PUBKEY_COLS} FROM publishable_keys WHERE id = $1", key_id
        )
        return to.pubkey(rows[0]) if rows else None

    async def active_publishable_key(self, workspace_id: str) -> PublishableKey | None:
        rows = await self._fetch(
            f"SELECT {PUBKEY_COLS} FROM publishable_keys"
            " WHERE workspace_id = $1 AND revoked_at_ms IS NULL ORDER BY id DESC LIMIT 1",
            workspace_id,
        )
        return to.pubkey(rows[0]) if rows else None

    # -- connections and rules ---------------------------------------------------
    async def create_connection(self, connection: Connection) -> None:
        row = list(msgspec.structs.astuple(connection))
        row[4] = json_encode(connection.metadata).decode()
        await self._execute(
            f"INSERT INTO connections ({CONNECTION_COLS})"
            f" VALUES ({', '.join(f'${i}' for i in range(1, 14))})",
            *row,
            config=True,
        )

    async def update_connection(self, connection: Connection) -> None:
        await self._execute(
            numbered(queries.UPDATE_CONNECTION), *queries.connection_update(connection), config=True
        )

    async def delete_connection(self, connection_id: str) -> None:
        await self._execute("DELETE FROM connections WHERE id = $1", connection_id, config=True)

    async def get_connection(self, connection_id: str) -> Connection | None:
        rows = await self._fetch(
            f"SELECT {CONNECTION_COLS} FROM connections WHERE id = $1", connection_id
        )
        return to.connection(rows[0]) if rows else None

    async def list_connections(
        self, workspace_id: str | None, limit: int, after: str | None
    ) -> Page:
        query = queries.connections_query(workspace_id, limit, after)
        return await self._page(to.connection, query, limit)

    async def create_rule(self, rule: Rule) -> None:
        row = list(msgspec.structs.astuple(rule))
        row[7] = json_encode(rule.metadata).decode()
        await self._execute(
            f"INSERT INTO rules ({RULE_COLS}) VALUES ({', '.join(f'${i}' for i in range(1, 14))})",
            *row,
            config=True,
        )

    async def delete_rule(self, rule_id: str) -> None:
        await self._execute("DELETE FROM rules WHERE id = $1", rule_id, config=True)

    async def get_rule(self, rule_id: str) -> Rule | None:
        rows = await self._fetch(f"SELECT {RULE_COLS} FROM rules WHERE id = $1", rule_id)
        return to.rule(rows[0]) if rows else None

    async def list_rules(
        self,
        workspace_id: str | None,
        connection_id: str | None,
        limit: int,
        after: str | None,
        f: RuleFilter | None = None,
    ) -> Page:
        query = queries.rules_query(workspace_id, connection_id, f or RuleFilter(), limit, after)
        return await self._page(to.rule, query, limit)

    async def rules_of_workspace(self, workspace_id: str) -> list[Rule]:
        rows = await self._fetch(
            f"SELECT {RULE_COLS} FROM rules WHERE workspace_id = $1 ORDER BY id", workspace_id
        )
        return [to.rule(r) for r in rows]

    # -- idempotency and rate limits shared by replicas ------------------------------
    async def get_idempotency(self, workspace_id: str, key: str) -> IdempotencyRecord | None:
        rows = await self._fetch(
            f"SELECT {IDEMPOTENCY_COLS} FROM idempotency_keys WHERE workspace_id = $1 AND key = $2",
            workspace_id,
            key,
        )
        return to.idempotency(rows[0]) if rows else None

    async def reserve_idempotency(
        self, record: IdempotencyRecord, expired_before_ms: int, stale_before_ms: int
    ) -> IdempotencyRecord | None:
        """Reserve a key for this request (None), or return what holds it already.

        An expired answer, or a reservation older than `stale_before_ms` (its
        replica died before answering), is taken over.
        """
        reserved = await self._fetch(
            f"INSERT INTO idempotency_keys AS k ({IDEMPOTENCY_COLS})"
            " VALUES ($1, $2, $3, 0, ''::bytea, $4)"
            " ON CONFLICT (workspace_id, key) DO UPDATE SET"
            " request_digest = excluded.request_digest, status = 0, body = excluded.body,"
            " created_at_ms = excluded.created_at_ms"
            " WHERE k.created_at_ms < $5 OR (k.status = 0 AND k.created_at_ms < $6)"
            " RETURNING 1",
            record.workspace_id,
            record.key,
            record.request_digest,
            record.created_at_ms,
            expired_before_ms,
            stale_before_ms,
        )
        if reserved:
            return None
        return await self.get_idempotency(record.workspace_id, record.key)

    async def drop_reservation(self, workspace_id: str, key: str, reserved_at_ms: int) -> None:
        await self._execute(
            "DELETE FROM idempotency_keys"
            " WHERE workspace_id = $1 AND key = $2 AND status = 0 AND created_at_ms = $3",
            workspace_id,
            key,
            reserved_at_ms,
        )

    async def take_tokens(
        self, key: str, count: int, rate_per_ms: float, burst: float, now_ms: int
    ) -> float:
        """Spend `count` tokens of a shared bucket; 0 if granted, else how many are missing."""
        granted = await self._fetch(
            "INSERT INTO rate_buckets AS b (key, tokens, at_ms)"
            " VALUES ($1, $4::float8 - $2::float8, $5::int8)"
            " ON CONFLICT (key) DO UPDATE SET tokens ="
            " least($4, b.tokens + greatest(0, $5 - b.at_ms) * $3::float8) - $2, at_ms = $5"
            " WHERE least($4, b.tokens + greatest(0, $5 - b.at_ms) * $3::float8) >= $2"
            " RETURNING tokens",
            key,
            float(count),
            rate_per_ms,
            burst,
            now_ms,
        )
        if granted:
            return 0.0
        rows = await self._fetch(
            "SELECT least($2::float8, tokens + greatest(0, $3::int8 - at_ms) * $4::float8)"
            " FROM rate_buckets"
            " WHERE key = $1",
            key,
            burst,
            now_ms,
            rate_per_ms,
        )
        available = float(rows[0][0]) if rows else burst
        return max(min(float(count), burst) - available, 1.0)

    # -- ingest and delivery -----------------------------------------------------
    async def write(self, batch: WriteBatch) -> None:
        if batch.disable_connections:
            # Rare (an endpoint gone): several statements, the last ones reading
            # what the first wrote, which one statement's snapshot cannot.
            await self._tx(lambda conn: self._write_with_disable(conn, batch))
            return
        sql, args = self._group_commit(batch)
        await self._tx(lambda conn: conn.execute(sql, *args), transaction=False)

    def _group_commit(self, batch: WriteBatch) -> tuple[str, list[Any]]:
        """The whole batch as one statement, and its arguments."""
        parts: list[str] = []
        args: list[Any] = []

        def part(name: str, sql: str, values: Sequence[Any]) -> None:
            parts.append(f"{name} AS ({sql})")
            args.extend(values)

        if batch.events:
            part("new_events", _INSERT_EVENTS, _columns(batch.events))
        if batch.rule_events:
            part("new_rule_events", _INSERT_RULE_EVENTS, _columns(batch.rule_events))
        if batch.idempotency:
            part("answers", _UPSERT_IDEMPOTENCY, _columns(batch.idempotency))
        if batch.outcomes:
            outcomes = batch.outcomes
            part(
                "applied",
                _APPLY_OUTCOMES,
                [
                    [o.rule_event_id for o in outcomes],
                    [o.status for o in outcomes],
                    [o.next_attempt_at_ms for o in outcomes],
                    [o.last_error for o in outcomes],
                    [o.completed_at_ms for o in outcomes],
                ],
            )
            part("new_attempts", _INSERT_ATTEMPTS, _columns([o.attempt for o in outcomes]))
            streaks = failing_streaks(outcomes)
            if streaks:
                part("streaks", _FAILING_STREAKS, [list(streaks), list(streaks.values())])
            part("counted", _COUNT_OUTCOMES, [])
        # Deliveries left pending (no room to send them here): wake the other replicas.
        if any(r.status == "pending" for r in batch.rule_events):
            final, args = "SELECT pg_notify(?, '')", [*args, self._work_channel]
        else:
            final = "SELECT 1"
        return numbered(f"WITH {', '.join(parts)} {final}"), args

    async def _write_with_disable(self, conn: Conn, batch: WriteBatch) -> None:
        rest = msgspec.structs.replace(batch, disable_connections={})
        if rest.events or rest.rule_events or rest.idempotency or rest.outcomes:
            sql, args = self._group_commit(rest)
            await conn.execute(sql, *args)
        await self._disable(conn, batch.disable_connections, batch.now_ms)

    async def _disable(self, conn: Conn, reasons: dict[str, str], now_ms: int) -> None:
        """Disable connections and dead-letter their queued deliveries (replayable later)."""
        await conn.execute(
            "UPDATE connections c SET active = false, inactive_reason = v.reason"
            " FROM unnest($1::text[], $2::text[]) AS v(id, reason) WHERE c.id = v.id",
            list(reasons),
            list(reasons.values()),
        )
        touched = await conn.fetch(
            "UPDATE rule_events r SET status = 'failed', lease_until_ms = NULL,"
            " completed_at_ms = $3, last_error = 'connection disabled (' || v.reason || ')'"
            " FROM unnest($1::text[], $2::text[]) AS v(id, reason)"
            " WHERE r.connection_id = v.id AND r.status = 'pending' RETURNING r.event_id",
            list(reasons),
            list(reasons.values()),
            now_ms,
        )
        await conn.execute(_REFRESH_EVENTS, sorted({r[0] for r in touched}))
        await conn.execute("SELECT pg_notify($1, '')", self._config_channel)

    async def claim_due(
        self,
        now_ms: int,
        limit: int,
        lease_until_ms: int,
        room: Mapping[str, int],
        per_connection: int | None = None,
    ) -> list[Claimed]:
        excluded = [c for c, free in room.items() if free <= 0]

        async def claim(conn: Conn) -> list[asyncpg.Record]:
            # Candidates are locked SKIP LOCKED, so replicas claiming at once get
            # disjoint sets; those that do not fit are unlocked at commit, unwritten.
            # Only `limit` of them (SQLite reads more): each locked row is one
            # another replica claiming at the same moment cannot have.
            candidates = await conn.fetch(_CANDIDATES, now_ms, excluded, limit)
            pairs = ((r[0], r[1]) for r in candidates)
            ids = within_room(pairs, room, per_connection or limit, limit)
            return list(await conn.fetch(_CLAIM, now_ms, lease_until_ms, ids)) if ids else []

        rows = await self._tx(claim)
        return [
            Claimed(
                rule_event_id=r[0],
                event_id=r[1],
                workspace_id=r[2],
                rule_id=r[3],
                connection_id=r[4],
                attempt_count=r[5],
                schedule_attempts=r[6],
                trigger=r[7],
                event=r[8],
                resource=r[9],
                resource_id=r[10],
                payload=bytes(r[11]),
                event_created_at_ms=r[12],
            )
            for r in rows
        ]

    async def release(self, rule_event_ids: Sequence[str], now_ms: int) -> None:
        if rule_event_ids:
            await self._execute(
                "UPDATE rule_events SET status = 'pending', lease_until_ms = NULL,"
                " next_attempt_at_ms = $1 WHERE id = ANY($2::text[]) AND status = 'processing'",
                now_ms,
                list(rule_event_ids),
            )
            await self._notify_work()

    async def release_expired(self, now_ms: int) -> int:
        released = await self._execute(
            "UPDATE rule_events SET status = 'pending', lease_until_ms = NULL,"
            " next_attempt_at_ms = $1 WHERE status = 'processing' AND lease_until_ms <= $1",
            now_ms,
        )
        if released:
            await self._notify_work()
        return released

    async def _notify_work(self) -> None:
        await self._execute("SELECT pg_notify($1, '')", self._work_channel)

    # -- history -----------------------------------------------------------------
    async def get_event(self, event_id: str) -> Event | None:
        rows = await self._fetch(f"SELECT {EVENT_COLS} FROM events WHERE id = $1", event_id)
        return to.event(rows[0]) if rows else None

    async def rule_events_of(self, event_ids: Sequence[str]) -> list[RuleEvent]:
        if not event_ids:
            return []
        rows = await self._fetch(
            f"SELECT {RULE_EVENT_COLS} FROM rule_events WHERE event_id = ANY($1::text[])"
            " ORDER BY id",
            list(event_ids),
        )
        return [to.rule_event(r) for r in rows]

    async def attempts_of(self, rule_event_id: str) -> list[Attempt]:
        rows = await self._fetch(
            f"SELECT {ATTEMPT_COLS} FROM attempts WHERE rule_event_id = $1 ORDER BY id",
            rule_event_id,
        )
        return [to.attempt(r) for r in rows]

    async def list_events(self, f: EventFilter, limit: int, after: str | None) -> Page:
        return await self._page(to.event, queries.events_query(f, limit, after), limit)

    async def list_deliveries(self, f: DeliveryFilter, limit: int, after: str | None) -> Page:
        return await self._page(
            to.delivery,
            queries.deliveries_query(f, limit, after),
            limit,
            lambda d: d.rule_event.id,
        )

    async def get_delivery(self, rule_event_id: str) -> Delivery | None:
        found = await self.list_deliveries(DeliveryFilter(id=rule_event_id), 1, None)
        return found.records[0] if found.records else None

    async def requeue(self, rule_event_ids: Sequence[str], now_ms: int) -> list[str]:
        """Settled deliveries back to pending, due now; in-flight ones are left alone."""
        if not rule_event_ids:
            return []

        async def requeue(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "UPDATE rule_events SET status = 'pending', next_attempt_at_ms = $1,"
                " trigger = 'manual', schedule_attempts = 0, completed_at_ms = NULL,"
                " lease_until_ms = NULL"
                " WHERE id = ANY($2::text[]) AND status IN ('failed', 'completed')"
                " RETURNING id, event_id",
                now_ms,
                list(rule_event_ids),
            )
            await self._after_requeue(conn, rows)
            return [r[0] for r in rows]

        return await self._tx(requeue)

    async def _after_requeue(self, conn: Conn, rows: list[asyncpg.Record]) -> None:
        if rows:
            await conn.execute(_REFRESH_EVENTS, sorted({r[1] for r in rows}))
            await conn.execute("SELECT pg_notify($1, '')", self._work_channel)

    async def requeue_failed(
        self, f: DeliveryFilter, now_ms: int, limit: int
    ) -> tuple[int, str | None]:
        sql, params = queries.requeue_failed(f, now_ms, limit)

        async def requeue(conn: Conn) -> list[asyncpg.Record]:
            rows = list(await conn.fetch(numbered(sql), *params))
            await self._after_requeue(conn, rows)
            return rows

        rows = await self._tx(requeue)
        return len(rows), max((r[0] for r in rows), default=None)

    async def disable_connections(self, reasons: dict[str, str], now_ms: int) -> None:
        await self._tx(lambda conn: self._disable(conn, reasons, now_ms))

    async def failing_connections(self, since_before_ms: int) -> list[str]:
        rows = await self._fetch(
            "SELECT id FROM connections WHERE failing_since_ms <= $1 AND active", since_before_ms
        )
        return [r[0] for r in rows]

    async def purge_idempotency(self, before_ms: int) -> int:
        return await self._execute(
            "DELETE FROM idempotency_keys WHERE created_at_ms < $1", before_ms
        )

    async def purge_history(self, before_ms: int, limit: int) -> int:
        # Events with a delivery still owed are kept (rule events and attempts cascade).
        return await self._execute(
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e"
            " WHERE e.id < $1 AND NOT EXISTS (SELECT 1 FROM rule_events r"
            "   WHERE r.event_id = e.id AND r.status IN ('pending', 'processing'))"
            " ORDER BY e.id LIMIT $2)",
            uuid7_floor(before_ms),
            limit,
        )

    async def count_rule_events(self, status: str) -> int:
        rows = await self._fetch("SELECT count(*) FROM rule_events WHERE status = $1", status)
        return int(rows[0][0])
