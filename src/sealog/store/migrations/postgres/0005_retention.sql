-- Retention: an org's policy (keep forever, or `days`), whether it is locked (then it can
-- only be lengthened), and how far purges have gone. Events with an index below
-- pruned_before are gone; a purge under way removes them up to purge_to; purge_record is
-- the index of the audit_log.purged event that ordered the latest purge. No row: keep
-- forever, nothing removed.
CREATE TABLE retention (
    org_id         TEXT COLLATE "C" PRIMARY KEY REFERENCES orgs (id),
    days           INTEGER CHECK (days > 0),
    locked_at      BIGINT,
    pruned_before  BIGINT NOT NULL DEFAULT 0 CHECK (pruned_before >= 0),
    purge_to       BIGINT NOT NULL DEFAULT 0 CHECK (purge_to >= 0),
    purge_record   BIGINT,
    updated_at     BIGINT NOT NULL
);

-- Legal holds: while one covers an event (the whole org, or events that occurred in
-- [occurred_from, occurred_to)), neither retention nor erasure removes it.
CREATE TABLE legal_holds (
    org_id         TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    id             TEXT COLLATE "C" NOT NULL,
    name           TEXT COLLATE "C" NOT NULL,
    reason         TEXT COLLATE "C" NOT NULL,
    occurred_from  BIGINT,
    occurred_to    BIGINT,
    created_by     TEXT COLLATE "C",
    created_at     BIGINT NOT NULL,
    released_at    BIGINT,
    released_by    TEXT COLLATE "C",
    PRIMARY KEY (org_id, id)
);
