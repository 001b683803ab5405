"""The embedded SQLite backend (aiosqlite, WAL)."""

from meshes_gateway.storage.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
