-- Times are integer milliseconds since the epoch (UTC); ids are UUIDv7 text, so
-- ordering by id is ordering by creation time.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE api_keys (
    access_key    TEXT PRIMARY KEY,
    secret_enc    BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE workspaces (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE publishable_keys (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    digest        BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
) STRICT;
CREATE INDEX publishable_keys_workspace ON publishable_keys (workspace_id, id);

CREATE TABLE connections (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    type            TEXT NOT NULL,
    name            TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    secrets_enc     BLOB NOT NULL,
    active          INTEGER NOT NULL,
    inactive_reason TEXT,
    hidden          INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX connections_workspace ON connections (workspace_id, id);

CREATE TABLE rules (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    event         TEXT NOT NULL,
    resource      TEXT,
    resource_id   TEXT,
    type          TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    active        INTEGER NOT NULL,
    hidden        INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX rules_workspace ON rules (workspace_id, id);
CREATE INDEX rules_connection ON rules (connection_id);

-- History outlives configuration: events and deliveries keep their ids after a
-- rule or connection is deleted, so no foreign keys to rules/connections here.
CREATE TABLE events (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL,
    event         TEXT NOT NULL,
    resource      TEXT,
    resource_id   TEXT,
    payload       BLOB NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX events_workspace ON events (workspace_id, id);

CREATE TABLE rule_events (
    id                 TEXT PRIMARY KEY,
    event_id           TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    workspace_id       TEXT NOT NULL,
    rule_id            TEXT NOT NULL,
    connection_id      TEXT NOT NULL,
    status             TEXT NOT NULL,
    attempt_count      INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER,
    lease_until_ms     INTEGER,
    last_error         TEXT,
    started_at_ms      INTEGER,
    completed_at_ms    INTEGER,
    created_at_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX rule_events_event ON rule_events (event_id);
-- The scheduler's two paths: due pending rows, and processing rows whose lease ran out.
CREATE INDEX rule_events_due ON rule_events (next_attempt_at_ms) WHERE status = 'pending';
CREATE INDEX rule_events_lease ON rule_events (lease_until_ms) WHERE status = 'processing';

CREATE TABLE attempts (
    id               TEXT PRIMARY KEY,
    rule_event_id    TEXT NOT NULL REFERENCES rule_events (id) ON DELETE CASCADE,
    attempted_at_ms  INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    response_excerpt BLOB,
    trigger          TEXT NOT NULL
) STRICT;
CREATE INDEX attempts_rule_event ON attempts (rule_event_id, id);

CREATE TABLE idempotency_keys (
    workspace_id   TEXT NOT NULL,
    key            TEXT NOT NULL,
    request_digest BLOB NOT NULL,
    status         INTEGER NOT NULL,
    body           BLOB NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency_keys (created_at_ms);
