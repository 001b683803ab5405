"""The Store contract runs against every backend: SQLite always, PostgreSQL when reachable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshes_gateway.storage.base import Store
from meshes_gateway.storage.sqlite import SqliteStore
from tests.pg import fresh_schema

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        backend: Store = SqliteStore(tmp_path / "contract.db", synchronous="NORMAL")
        await backend.open()
        try:
            yield backend
        finally:
            await backend.close()
        return
    from meshes_gateway.storage.postgres import PostgresStore

    async with fresh_schema() as url:
        backend = PostgresStore(url)
        await backend.open()
        try:
            yield backend
        finally:
            await backend.close()
