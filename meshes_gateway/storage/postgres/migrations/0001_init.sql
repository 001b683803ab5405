-- The same tables as the SQLite backend, at its latest migration. Times are
-- integer milliseconds since the epoch (UTC); ids are UUIDv7 text, so ordering
-- by id is ordering by creation time. Payloads are the exact bytes received.

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE api_keys (
    access_key    text PRIMARY KEY,
    secret_enc    bytea NOT NULL,
    created_at_ms bigint NOT NULL
);

CREATE TABLE workspaces (
    id            text PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    description   text,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);

CREATE TABLE publishable_keys (
    id            text PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          text NOT NULL,
    prefix        text NOT NULL,
    digest        bytea NOT NULL,
    created_at_ms bigint NOT NULL,
    revoked_at_ms bigint
);
CREATE INDEX publishable_keys_workspace ON publishable_keys (workspace_id, id);

CREATE TABLE connections (
    id               text PRIMARY KEY,
    workspace_id     text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    type             text NOT NULL,
    name             text NOT NULL,
    metadata         text NOT NULL,
    secrets_enc      bytea NOT NULL,
    active           boolean NOT NULL,
    inactive_reason  text,
    hidden           boolean NOT NULL,
    created_by       text NOT NULL,
    created_at_ms    bigint NOT NULL,
    updated_at_ms    bigint NOT NULL,
    failing_since_ms bigint
);
CREATE INDEX connections_workspace ON connections (workspace_id, id);
CREATE INDEX connections_failing ON connections (failing_since_ms)
    WHERE failing_since_ms IS NOT NULL;

CREATE TABLE rules (
    id            text PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id text NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    event         text NOT NULL,
    resource      text,
    resource_id   text,
    type          text NOT NULL,
    metadata      text NOT NULL,
    active        boolean NOT NULL,
    hidden        boolean NOT NULL,
    created_by    text NOT NULL,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);
CREATE INDEX rules_workspace ON rules (workspace_id, id);
CREATE INDEX rules_connection ON rules (connection_id);

-- History outlives configuration: no foreign keys from history to rules/connections.
CREATE TABLE events (
    id              text PRIMARY KEY,
    workspace_id    text NOT NULL,
    event           text NOT NULL,
    resource        text,
    resource_id     text,
    payload         bytea NOT NULL,
    created_by      text NOT NULL,
    created_at_ms   bigint NOT NULL,
    status          text NOT NULL,
    total_rules     integer NOT NULL,
    completed_count integer NOT NULL DEFAULT 0,
    failed_count    integer NOT NULL DEFAULT 0,
    completed_at_ms bigint
);
CREATE INDEX events_workspace ON events (workspace_id, id);
CREATE INDEX events_workspace_event ON events (workspace_id, event, id);
CREATE INDEX events_workspace_status ON events (workspace_id, status, id);
CREATE INDEX events_workspace_resource ON events (workspace_id, resource, resource_id, id);

CREATE TABLE rule_events (
    id                 text PRIMARY KEY,
    event_id           text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    workspace_id       text NOT NULL,
    rule_id            text NOT NULL,
    connection_id      text NOT NULL,
    status             text NOT NULL,
    attempt_count      integer NOT NULL DEFAULT 0,
    next_attempt_at_ms bigint,
    last_error         text,
    started_at_ms      bigint,
    completed_at_ms    bigint,
    created_at_ms      bigint NOT NULL,
    trigger            text NOT NULL,
    schedule_attempts  integer NOT NULL DEFAULT 0,
    lease_until_ms     bigint
);
CREATE INDEX rule_events_event ON rule_events (event_id);
-- The claim path (due pending rows) and the lease sweep (processing rows).
CREATE INDEX rule_events_due ON rule_events (next_attempt_at_ms) WHERE status = 'pending';
CREATE INDEX rule_events_lease ON rule_events (lease_until_ms) WHERE status = 'processing';
CREATE INDEX rule_events_connection ON rule_events (connection_id, status, id);
CREATE INDEX rule_events_rule ON rule_events (rule_id, id);
CREATE INDEX rule_events_workspace ON rule_events (workspace_id, status, id);

CREATE TABLE attempts (
    id               text PRIMARY KEY,
    rule_event_id    text NOT NULL REFERENCES rule_events (id) ON DELETE CASCADE,
    attempted_at_ms  bigint NOT NULL,
    duration_ms      integer NOT NULL,
    status_code      integer,
    error            text,
    response_excerpt bytea,
    trigger          text NOT NULL
);
CREATE INDEX attempts_rule_event ON attempts (rule_event_id, id);

-- status 0 marks a reservation: a replica is still producing the first answer.
CREATE TABLE idempotency_keys (
    workspace_id   text NOT NULL,
    key            text NOT NULL,
    request_digest bytea NOT NULL,
    status         integer NOT NULL,
    body           bytea NOT NULL,
    created_at_ms  bigint NOT NULL,
    PRIMARY KEY (workspace_id, key)
);
CREATE INDEX idempotency_created ON idempotency_keys (created_at_ms);

-- Per-publishable-key token buckets, shared by every replica.
CREATE TABLE rate_buckets (
    key    text PRIMARY KEY,
    tokens double precision NOT NULL,
    at_ms  bigint NOT NULL
);
