-- Orgs, API keys and the events of each org's log.
-- log_size and compact_range are the head of the org's Merkle tree: its size and the
-- hashes of the perfect subtrees it is made of (32 bytes each, largest first).
CREATE TABLE orgs (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    log_size       INTEGER NOT NULL DEFAULT 0,
    compact_range  BLOB NOT NULL DEFAULT x''
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id),
    name         TEXT NOT NULL,
    secret_hash  BLOB NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
CREATE INDEX api_keys_org ON api_keys(org_id, created_at);

-- One row per event; the canonical document lives in event_docs so that scans stay narrow.
-- Lowercased copies of the qualifier fields serve the search language.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    org_id         TEXT NOT NULL,
    idx            INTEGER NOT NULL,
    id             TEXT NOT NULL,
    occurred_at    INTEGER NOT NULL,
    category       TEXT NOT NULL,
    result         TEXT NOT NULL,
    action         TEXT NOT NULL,
    actor_id       TEXT,
    actor_email    TEXT,
    actor_name     TEXT,
    resource_type  TEXT,
    resource_id    TEXT,
    method         TEXT,
    path           TEXT,
    ip             TEXT,
    leaf_hash      BLOB NOT NULL,
    search_text    TEXT NOT NULL,
    keys_text      TEXT NOT NULL
);
CREATE UNIQUE INDEX events_org_index ON events(org_id, idx);
CREATE UNIQUE INDEX events_org_id ON events(org_id, id);
-- result rides along so that counts filtered by result read the index alone.
CREATE INDEX events_org_time ON events(org_id, occurred_at, id, result);
CREATE INDEX events_org_category_time ON events(org_id, category, occurred_at, id, result);

CREATE TABLE event_docs (
    seq  INTEGER PRIMARY KEY,
    doc  BLOB NOT NULL
);

-- External-content full-text index over events.search_text / keys_text, written in the
-- same transaction as the rows. detail=column: phrases are checked exactly on the row.
CREATE VIRTUAL TABLE events_fts USING fts5(
    search_text, keys_text,
    content='events', content_rowid='seq',
    tokenize='unicode61 remove_diacritics 0',
    detail=column, columnsize=0
);

-- The Merkle tree: every leaf hash (level 0, a copy kept apart from the event rows) and
-- every complete subtree; node (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level).
CREATE TABLE tree_nodes (
    org_id  TEXT NOT NULL,
    level   INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    hash    BLOB NOT NULL,
    PRIMARY KEY (org_id, level, idx)
) WITHOUT ROWID;

-- Every signed checkpoint is kept.
CREATE TABLE checkpoints (
    org_id      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    note        TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, size)
);

-- The log's verifier keys, current and retired: a rotated key still verifies what it signed.
CREATE TABLE log_keys (
    vkey        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);
