"""The Store contract: every backend must pass these tests (issue 5 adds PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshes_gateway.storage.base import Store
from meshes_gateway.storage.sqlite import SqliteStore

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store = SqliteStore(tmp_path / "contract.db", synchronous="NORMAL")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
