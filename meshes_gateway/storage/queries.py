"""Listing and filter SQL shared by the SQL backends.

Built with `?` placeholders; the PostgreSQL backend renumbers them (`$1`,
`$2`, ...) with `numbered`. Only filters that are set become conditions, so
no query carries `? IS NULL OR ...` branches that defeat an index (and that
PostgreSQL cannot type).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from meshes_gateway.storage.records import Connection, DeliveryFilter, EventFilter, Page, RuleFilter
from meshes_gateway.storage.rows import (
    CONNECTION_COLS,
    EVENT_LIST_COLS,
    RULE_COLS,
    RULE_EVENT_COLS,
    WORKSPACE_COLS,
    json_encode,
)

UPDATE_CONNECTION = (
    "UPDATE connections SET name = ?, metadata = ?, secrets_enc = ?, active = ?,"
    " inactive_reason = ?, hidden = ?, updated_at_ms = ?, failing_since_ms = ? WHERE id = ?"
)


def connection_update(c: Connection) -> list[Any]:
    """The parameters of `UPDATE_CONNECTION`."""
    return [
        c.name,
        json_encode(c.metadata).decode(),
        c.secrets_enc,
        c.active,
        c.inactive_reason,
        c.hidden,
        c.updated_at_ms,
        c.failing_since_ms,
        c.id,
    ]


def refresh_events(which: str) -> str:
    """Recompute events' status and counts from their rule events; `which` selects the
    events by `event_id` (`IN (...)` on SQLite, `= ANY(...)` on PostgreSQL)."""
    return f"""
UPDATE events SET
  status = CASE
    WHEN a.c = a.n THEN 'completed'
    WHEN a.c + a.f = a.n THEN 'failed'
    WHEN a.fresh = a.n THEN 'pending'
    ELSE 'processing' END,
  completed_count = a.c,
  failed_count = a.f,
  completed_at_ms = CASE WHEN a.c + a.f = a.n THEN a.done END
FROM (
  SELECT event_id, count(*) AS n,
         count(*) FILTER (WHERE status = 'completed') AS c,
         count(*) FILTER (WHERE status = 'failed') AS f,
         count(*) FILTER (WHERE status = 'pending' AND attempt_count = 0) AS fresh,
         max(completed_at_ms) AS done
  FROM rule_events WHERE event_id {which} GROUP BY event_id
) AS a
WHERE events.id = a.event_id
"""


Query = tuple[str, list[Any]]
_MARK = re.compile(r"\?")


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (no literal in our SQL holds a `?`)."""
    counter = iter(range(1, 10_000))
    return _MARK.sub(lambda _: f"${next(counter)}", sql)


def equal_to(pairs: Iterable[tuple[str, Any]]) -> Query:
    """`column = ?` for every filter that is set, with its parameter, joined by AND."""
    present = [(column, value) for column, value in pairs if value is not None]
    return " AND ".join(f"{column} = ?" for column, _ in present), [v for _, v in present]


def id_range(lower: str | None, upper: str | None, cursor: str | None, column: str) -> Query:
    """Conditions for `lower <= id < upper` and `id < cursor` (ids sort by creation time)."""
    conds: list[str] = []
    params: list[Any] = []
    if lower is not None:
        conds.append(f"{column} >= ?")
        params.append(lower)
    bounds = [b for b in (upper, cursor) if b is not None]
    if bounds:
        conds.append(f"{column} < ?")
        params.append(min(bounds))
    return " AND ".join(conds), params


def where(*parts: Query) -> Query:
    """`WHERE a AND b ...` of the non-empty parts (or nothing), with their parameters."""
    conds = [sql for sql, _ in parts if sql]
    params = [p for _, ps in parts for p in ps]
    return (" WHERE " + " AND ".join(conds) if conds else ""), params


def newest_first(
    select: str, id_column: str, filters: Iterable[tuple[str, Any]], limit: int, after: str | None
) -> Query:
    """A page of `select` newest first by id, after a cursor, with equality filters."""
    clause, params = where(equal_to(filters), id_range(None, None, after, id_column))
    return f"{select}{clause} ORDER BY {id_column} DESC LIMIT ?", [*params, limit + 1]


def workspaces_query(limit: int, after: str | None) -> Query:
    return newest_first(f"SELECT {WORKSPACE_COLS} FROM workspaces", "id", (), limit, after)


def connections_query(workspace_id: str | None, limit: int, after: str | None) -> Query:
    return newest_first(
        f"SELECT {CONNECTION_COLS} FROM connections",
        "id",
        (("workspace_id", workspace_id),),
        limit,
        after,
    )


def rules_query(
    workspace_id: str | None,
    connection_id: str | None,
    f: RuleFilter,
    limit: int,
    after: str | None,
) -> Query:
    """A rule listing with Meshes' filters (exact event pattern, resource, resource id)."""
    return newest_first(
        f"SELECT {RULE_COLS} FROM rules",
        "id",
        (
            ("workspace_id", workspace_id),
            ("connection_id", connection_id),
            ("event", f.event),
            ("resource", f.resource),
            ("resource_id", f.resource_id),
        ),
        limit,
        after,
    )


def events_query(f: EventFilter, limit: int, after: str | None) -> Query:
    """An event listing (without payloads)."""
    clause, params = where(
        id_range(f.after_id, f.before_id, after, "id"),
        equal_to(
            (
                ("workspace_id", f.workspace_id),
                ("event", f.event),
                ("status", f.status),
                ("resource", f.resource),
                ("resource_id", f.resource_id),
            )
        ),
    )
    sql = f"SELECT {EVENT_LIST_COLS} FROM events{clause} ORDER BY id DESC LIMIT ?"
    return sql, [*params, limit + 1]


def deliveries_query(f: DeliveryFilter, limit: int, after: str | None) -> Query:
    """A rule-event listing, joined to its event's name and resource."""
    clause, params = where(
        id_range(f.after_id, f.before_id, after, "r.id"),
        equal_to(
            (
                ("r.workspace_id", f.workspace_id),
                ("r.status", f.status),
                ("r.connection_id", f.connection_id),
                ("r.rule_id", f.rule_id),
                ("r.event_id", f.event_id),
                ("r.id", f.id),
            )
        ),
    )
    cols = ", ".join("r." + c.strip() for c in RULE_EVENT_COLS.split(","))
    sql = (
        f"SELECT {cols}, e.event, e.resource, e.resource_id, e.created_by"
        f" FROM rule_events r JOIN events e ON e.id = r.event_id{clause}"
        " ORDER BY r.id DESC LIMIT ?"
    )
    return sql, [*params, limit + 1]


def requeue_failed(f: DeliveryFilter, now_ms: int, limit: int) -> Query:
    """Queue the next `limit` failed deliveries of a bulk replay, oldest first."""
    clause, params = where(
        ("status = 'failed'", []),
        id_range(f.after_id, f.before_id, None, "id"),
        equal_to(
            (
                ("workspace_id", f.workspace_id),
                ("connection_id", f.connection_id),
                ("rule_id", f.rule_id),
            )
        ),
    )
    sql = (
        "UPDATE rule_events SET status = 'pending', next_attempt_at_ms = ?,"
        " trigger = 'manual', schedule_attempts = 0, completed_at_ms = NULL"
        f" WHERE id IN (SELECT id FROM rule_events{clause} ORDER BY id LIMIT ?)"
        " RETURNING id, event_id"
    )
    return sql, [now_ms, *params, limit]


def page(rows: list[Any], limit: int, key: Callable[[Any], str]) -> Page:
    """Cut a `limit + 1` fetch into a page; the extra row only says that more exist."""
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(records=rows, next_cursor=key(rows[-1]))
    return Page(records=rows, next_cursor=None)
