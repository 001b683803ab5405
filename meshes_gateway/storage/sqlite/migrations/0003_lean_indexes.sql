-- Every index is paid for on each ingest (insert) and each outcome (status
-- update). These served only org-wide filters without a workspace, which walk
-- the primary key newest-first instead, and retention, which purges by id range.
DROP INDEX events_event;
DROP INDEX events_status;
DROP INDEX events_created;
DROP INDEX rule_events_status;
