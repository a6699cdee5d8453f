-- An org whose log was closed (the tenant offboarded, sealog orgs delete): its events,
-- members, keys and settings are deleted; its row, its checkpoints, its tree of hashes and
-- the closing record (its last event) are kept, so that the log is known to have ended,
-- not forked, and its id is never given to another log.
ALTER TABLE orgs ADD COLUMN closed_at INTEGER;
