-- Streams: each delivers an org's log, in index order, to a destination. next_index is the
-- cursor (the index of the next event to deliver); a worker delivers a stream while it
-- holds its lease, as export jobs are worked.
CREATE TABLE streams (
    id                 TEXT COLLATE "C" NOT NULL,
    org_id             TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    name               TEXT COLLATE "C" NOT NULL,
    kind               TEXT COLLATE "C" NOT NULL,
    format             TEXT COLLATE "C" NOT NULL,
    config             TEXT COLLATE "C" NOT NULL,
    sealed             BYTEA NOT NULL,
    state              TEXT COLLATE "C" NOT NULL,
    next_index         BIGINT NOT NULL CHECK (next_index >= 0),
    delivered          BIGINT NOT NULL DEFAULT 0,
    failures           BIGINT NOT NULL DEFAULT 0,
    attempts           INTEGER NOT NULL DEFAULT 0,
    last_delivered_at  BIGINT,
    last_error         TEXT COLLATE "C",
    failing_since      BIGINT,
    retry_at           BIGINT,
    lease_owner        TEXT COLLATE "C",
    lease_expires_at   BIGINT,
    created_by         TEXT COLLATE "C",
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX streams_due ON streams (org_id, state, retry_at);
