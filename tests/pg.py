"""The PostgreSQL server the scale-out tests use, and a throwaway schema per test.

`MESHES_TEST_DATABASE_URL` names it; otherwise the local server on
127.0.0.1:5432 (database `test`) is used when it answers. Where neither is
reachable the PostgreSQL half of the suite skips.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str | None:
    url = os.environ.get("MESHES_TEST_DATABASE_URL")
    if url:
        return url
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return DEFAULT_URL
    except OSError:
        return None


def require_server() -> str:
    url = server_url()
    if url is None:
        pytest.skip("no PostgreSQL reachable (set MESHES_TEST_DATABASE_URL)")
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.skip("asyncpg is not installed")
    return url


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A database URL pointing at a new, empty schema, dropped afterwards."""
    import asyncpg

    url = require_server()
    schema = "t_" + secrets.token_hex(6)
    try:
        yield f"{url}{'&' if '?' in url else '?'}schema={schema}"
    finally:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


async def drop_schemas(prefix: str) -> None:
    """Drop every schema whose name starts with `prefix` (a test session's leftovers)."""
    import asyncpg

    url = server_url()
    if url is None:
        return
    conn = await asyncpg.connect(url)
    try:
        names = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix
        )
        for (name,) in names:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        await conn.close()


async def table_counts(url: str, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows per table in the schema a gateway's database URL names."""
    import asyncpg

    from meshes_gateway.storage.postgres.store import split_url

    dsn, schema = split_url(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}  # noqa: S608
    finally:
        await conn.close()
