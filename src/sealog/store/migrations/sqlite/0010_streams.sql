-- Streams: each delivers an org's log, in index order, to a destination. next_index is the
-- cursor (the index of the next event to deliver); a worker delivers a stream while it
-- holds its lease, as export jobs are worked.
CREATE TABLE streams (
    id                 TEXT NOT NULL,
    org_id             TEXT NOT NULL REFERENCES orgs(id),
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL,
    format             TEXT NOT NULL,
    config             TEXT NOT NULL,
    sealed             BLOB NOT NULL,
    state              TEXT NOT NULL,
    next_index         INTEGER NOT NULL CHECK (next_index >= 0),
    delivered          INTEGER NOT NULL DEFAULT 0,
    failures           INTEGER NOT NULL DEFAULT 0,
    attempts           INTEGER NOT NULL DEFAULT 0,
    last_delivered_at  INTEGER,
    last_error         TEXT,
    failing_since      INTEGER,
    retry_at           INTEGER,
    lease_owner        TEXT,
    lease_expires_at   INTEGER,
    created_by         TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX streams_due ON streams(state, retry_at);
