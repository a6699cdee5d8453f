-- How many events purges have deleted from each org's full-text index since it was last
-- merged into one segment. FTS5 records a delete as an entry of its own, kept (with the
-- entry it cancels) until the segments holding both are merged: once this reaches a
-- quarter of the org's kept events, the purger merges the index, a few pages a
-- transaction, and the freed pages take the next events (release_emptied_storage).
CREATE TABLE fts_deleted (
    org_id   TEXT PRIMARY KEY REFERENCES orgs(id),
    deleted  INTEGER NOT NULL CHECK (deleted >= 0)
);
