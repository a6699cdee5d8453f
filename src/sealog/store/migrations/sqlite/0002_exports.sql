-- Export jobs: a durable queue. A worker claims a job by taking its lease, renews the
-- lease while it works, and another worker takes the job over once a lease expires.
CREATE TABLE exports (
    id                TEXT PRIMARY KEY,
    org_id            TEXT NOT NULL REFERENCES orgs(id),
    name              TEXT NOT NULL,
    format            TEXT NOT NULL,
    params            TEXT NOT NULL,
    snapshot_size     INTEGER NOT NULL,
    status            TEXT NOT NULL,
    progress          REAL NOT NULL DEFAULT 0,
    row_count         INTEGER,
    size_bytes        INTEGER,
    sha256            TEXT,
    error             TEXT,
    created_by        TEXT,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    expires_at        INTEGER,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 0,
    file_path         TEXT
);
CREATE INDEX exports_org_created ON exports(org_id, created_at);
CREATE INDEX exports_status_lease ON exports(status, lease_expires_at);
