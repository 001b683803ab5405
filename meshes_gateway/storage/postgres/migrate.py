"""Versioned migrations for PostgreSQL, applied once even when replicas start together."""

from __future__ import annotations

import asyncpg

from meshes_gateway.storage.scripts import migrations


async def migrate(conn: asyncpg.Connection, schema: str, lock_key: int) -> int:
    """Apply the migrations newer than the schema's version; returns the final version.

    Runs in one transaction under an advisory lock, so of several replicas
    starting at once one migrates and the others then find nothing to do.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        # Under the lock: two concurrent CREATE SCHEMA IF NOT EXISTS can still collide.
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = int(
            await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        )
        for version, sql in migrations("meshes_gateway.storage.postgres"):
            if version <= current:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            current = version
    return current
