-- Token buckets in the database, for the Store contract (the PostgreSQL backend
-- shares them between replicas; a single SQLite process keeps its own in memory).
CREATE TABLE rate_buckets (
    key    TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at_ms  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
