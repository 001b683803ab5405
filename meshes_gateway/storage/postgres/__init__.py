"""The scale-out PostgreSQL backend (asyncpg): several gateway replicas, one database."""

from meshes_gateway.storage.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
