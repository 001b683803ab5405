"""Versioned migrations: numbered `.sql` files applied in order, tracked by `user_version`."""

from __future__ import annotations

import aiosqlite

from meshes_gateway.storage.scripts import migrations


async def migrate(conn: aiosqlite.Connection) -> int:
    """Apply the migrations newer than the database's version; returns the final version."""
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    current = int(rows[0][0])
    for version, sql in migrations("meshes_gateway.storage.sqlite"):
        if version <= current:
            continue
        # executescript commits first, so the version bump rides in the same script
        # as the schema change and a crash never leaves a half-applied migration.
        await conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;")
        current = version
    return current
