"""Every history listing runs on an index: no full scan of events or rule events."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from meshes_gateway.storage.records import DeliveryFilter, EventFilter
from meshes_gateway.storage.sqlite import SqliteStore

U = "01930000-0000-7000-8000-000000000000"


@pytest.fixture
async def db(tmp_path: Path) -> sqlite3.Connection:
    store = SqliteStore(tmp_path / "plans.db")
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "plans.db")
    conn.execute("ANALYZE")
    return conn


def plan(conn: sqlite3.Connection, sql: str, params: list[object]) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


def assert_indexed(lines: list[str]) -> None:
    for line in lines:
        if line.startswith("SCAN"):
            assert "USING" in line, lines  # a bare SCAN is a full table scan


EVENT_FILTERS = {
    "workspace_id": U,
    "event": "invoice.paid",
    "status": "failed",
    "resource": "invoice",
    "resource_id": "in_1",
}


@pytest.mark.parametrize(
    "names",
    [
        combo
        for n in range(len(EVENT_FILTERS) + 1)
        for combo in itertools.combinations(EVENT_FILTERS, n)
        if "resource_id" not in combo or "resource" in combo
    ],
)
@pytest.mark.parametrize("ranged", [False, True])
def test_event_listings_use_an_index(
    db: sqlite3.Connection, names: tuple[str, ...], ranged: bool
) -> None:
    f = EventFilter(
        **{n: EVENT_FILTERS[n] for n in names},
        after_id=U if ranged else None,
        before_id=U if ranged else None,
    )
    sql, params = SqliteStore.events_query(f, 20, U)
    assert_indexed(plan(db, sql, params))


DELIVERY_FILTERS = {
    "workspace_id": U,
    "status": "failed",
    "connection_id": U,
    "rule_id": U,
    "event_id": U,
    "id": U,
}


@pytest.mark.parametrize(
    "names",
    [combo for n in range(3) for combo in itertools.combinations(DELIVERY_FILTERS, n)],
)
def test_delivery_listings_use_an_index(db: sqlite3.Connection, names: tuple[str, ...]) -> None:
    f = DeliveryFilter(**{n: DELIVERY_FILTERS[n] for n in names}, after_id=U)
    sql, params = SqliteStore.deliveries_query(f, 20, None)
    assert_indexed(plan(db, sql, params))
