-- History: an event's aggregate status and counts are kept on the event row
-- (updated with each batch of outcomes), so listing and filtering events by
-- status never aggregates rule events at read time.
ALTER TABLE events ADD COLUMN status TEXT NOT NULL DEFAULT 'completed';
ALTER TABLE events ADD COLUMN total_rules INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN completed_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN failed_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN completed_at_ms INTEGER;

-- `trigger` says what the next attempt is (scheduled, manual replay, test);
-- `schedule_attempts` counts attempts since the last replay, which is what the
-- retry schedule is indexed by (attempt_count keeps the lifetime total).
ALTER TABLE rule_events ADD COLUMN trigger TEXT NOT NULL DEFAULT 'scheduled';
ALTER TABLE rule_events ADD COLUMN schedule_attempts INTEGER NOT NULL DEFAULT 0;

-- Set on a connection's first failed attempt after a success, cleared by the
-- next success: the auto-disable sweep reads it.
ALTER TABLE connections ADD COLUMN failing_since_ms INTEGER;

-- Listing paths. Ids are UUIDv7, so id order is time order and `since`/`until`
-- become id ranges on these same indexes.
DROP INDEX events_workspace;
CREATE INDEX events_workspace ON events (workspace_id, id);
CREATE INDEX events_workspace_event ON events (workspace_id, event, id);
CREATE INDEX events_workspace_status ON events (workspace_id, status, id);
CREATE INDEX events_event ON events (event, id);
CREATE INDEX events_status ON events (status, id);
CREATE INDEX events_created ON events (created_at_ms);
CREATE INDEX rule_events_connection ON rule_events (connection_id, status, id);
CREATE INDEX rule_events_rule ON rule_events (rule_id, id);
CREATE INDEX rule_events_status ON rule_events (status, id);
CREATE INDEX rule_events_workspace ON rule_events (workspace_id, status, id);
CREATE INDEX connections_failing ON connections (failing_since_ms) WHERE failing_since_ms IS NOT NULL;
CREATE INDEX events_workspace_resource ON events (workspace_id, resource, resource_id, id);
