-- The log head keeps the received_at of the org's last event: a batch is stamped while it
-- holds the log, never earlier than that, so that received_at does not fall as the index
-- rises, whatever the clocks. Filled in after this script from each org's newest event
-- (SQLiteStore's _AFTER_MIGRATION); 0 for an org with none.
ALTER TABLE orgs ADD COLUMN last_received_at INTEGER NOT NULL DEFAULT 0;
