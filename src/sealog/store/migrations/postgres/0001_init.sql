-- The PostgreSQL schema: the SQLite schema's tables, keyed for a database shared by many
-- orgs and, later, sharded by org (docs/operations.md; the tables' roles on Citus are in
-- sealog/store/postgres/schema.py, checked against this catalog by the tests).
--
-- org_id comes first in every key and index of an org's tables; the few indexes that find
-- a row by an id alone (signing in, an API key, a session) are named in schema.py.
-- Times are BIGINT microseconds since the epoch (UTC), as on SQLite: the rows, filters and
-- cursors carry the same integers on both backends. Hashes are BYTEA.
-- Text is COLLATE "C": compared and ordered byte by byte, as SQLite does, whatever the
-- database's locale (page cursors order by id). Lowercasing happens in Python.

-- Full-text indexes that start with org_id (GIN over a text column): btree_gin is a
-- trusted extension, which the database's owner may create.
CREATE EXTENSION IF NOT EXISTS btree_gin;

-- The log head (size and compact range: the hashes of the perfect subtrees the tree is
-- made of, 32 bytes each, largest first) lives on the org's row, which each batch locks
-- FOR UPDATE: the lock numbers the org's events one batch at a time.
CREATE TABLE orgs (
    id             TEXT COLLATE "C" PRIMARY KEY,
    name           TEXT COLLATE "C" NOT NULL,
    created_at     BIGINT NOT NULL,
    log_size       BIGINT NOT NULL DEFAULT 0 CHECK (log_size >= 0),
    compact_range  BYTEA NOT NULL DEFAULT ''::bytea,
    -- one hash per set bit of the size
    CONSTRAINT orgs_compact_range_size
        CHECK (octet_length(compact_range) = 32 * bit_count(log_size::bit(64)))
);

-- People who sign in to the web UI. An email belongs to at most one live user of each org;
-- a removed user keeps its row (events name it).
CREATE TABLE users (
    org_id         TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    id             TEXT COLLATE "C" NOT NULL,
    email          TEXT COLLATE "C" NOT NULL,
    name           TEXT COLLATE "C" NOT NULL,
    role           TEXT COLLATE "C" NOT NULL,
    password_hash  TEXT COLLATE "C" NOT NULL,
    created_at     BIGINT NOT NULL,
    removed_at     BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX users_live_org_email ON users (org_id, email) WHERE removed_at IS NULL;
CREATE INDEX users_org ON users (org_id, created_at);
-- A session or key names its user by id alone (signing in names the org: the index above).
CREATE INDEX users_id ON users (id);

-- created_by: the user whose current role bounds the key; NULL for the operator's keys.
CREATE TABLE api_keys (
    org_id        TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    id            TEXT COLLATE "C" NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    secret_hash   BYTEA NOT NULL CHECK (octet_length(secret_hash) = 32),
    scopes        TEXT COLLATE "C" NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    last_used_at  BIGINT,
    created_by    TEXT COLLATE "C",
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, created_by) REFERENCES users (org_id, id)
);
CREATE INDEX api_keys_org ON api_keys (org_id, created_at);
CREATE INDEX api_keys_creator ON api_keys (org_id, created_by) WHERE created_by IS NOT NULL;
-- A request's key is found by the id its secret carries, before its org is known.
CREATE INDEX api_keys_id ON api_keys (id);

-- Only a hash of the session token is stored; id is the public name events use.
-- org_id (the user's) keeps a session beside its user when the tables are sharded.
CREATE TABLE sessions (
    org_id      TEXT COLLATE "C" NOT NULL,
    token_hash  BYTEA NOT NULL CHECK (octet_length(token_hash) = 32),
    id          TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    csrf_token  TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    PRIMARY KEY (org_id, token_hash),
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, id)
);
CREATE INDEX sessions_user ON sessions (org_id, user_id);
-- A request's session is found by its token alone.
CREATE INDEX sessions_token ON sessions (token_hash);

-- Recent failed sign-ins, one row an org's email (the failure times, oldest first): an
-- attempt upserts the row (INSERT ... ON CONFLICT (org_id, email) DO UPDATE), whose lock
-- makes concurrent attempts for one account count one after another, each seeing those
-- before it. The org need not exist (a sign-in to an unknown org counts as any other), so
-- there is no foreign key. last_failed_at lets old rows be forgotten without reading them.
CREATE TABLE login_failures (
    org_id          TEXT COLLATE "C" NOT NULL,
    email           TEXT COLLATE "C" NOT NULL,
    failed_at       BIGINT[] NOT NULL,
    last_failed_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, email)
);
CREATE INDEX login_failures_last ON login_failures (org_id, last_failed_at);

-- Events are partitioned by received_at, a month a partition (docs/operations.md says
-- why): received_at rises with the index within an org, so retention, which removes a
-- prefix of an org's log, removes whole old partitions. Upkeep (store/postgres/partitions.py)
-- makes each month's partition ahead of time, copying events_default (LIKE ... INCLUDING
-- ALL): its columns, constraints and indexes are those of every partition. A row for which
-- no month's partition exists lands in events_default; upkeep moves it out into its month.
--
-- A partitioned table's unique indexes must contain the partition key, so (org_id, idx) and
-- (org_id, id) are unique within each partition, on the partitions themselves: the org's
-- row lock numbers events (and tree_nodes holds each (org_id, 0, idx) leaf once), and
-- ingest checks stored ids under the same lock.
--
-- words, pairs and fields are the tokens sealog.search makes, stored as given (built with
-- array_to_tsvector from store/postgres/tokens.py: PostgreSQL's parser never re-splits
-- them): the search_text, word_pairs and field_tokens columns of the SQLite full-text
-- index, one tsvector each, so that one search plan can be written for either backend.
CREATE TABLE events (
    org_id         TEXT COLLATE "C" NOT NULL,
    idx            BIGINT NOT NULL CHECK (idx >= 0),
    id             TEXT COLLATE "C" NOT NULL,
    received_at    BIGINT NOT NULL,
    occurred_at    BIGINT NOT NULL,
    category       TEXT COLLATE "C" NOT NULL,
    result         TEXT COLLATE "C" NOT NULL,
    action         TEXT COLLATE "C" NOT NULL,
    actor_id       TEXT COLLATE "C",
    actor_email    TEXT COLLATE "C",
    actor_name     TEXT COLLATE "C",
    resource_type  TEXT COLLATE "C",
    resource_id    TEXT COLLATE "C",
    method         TEXT COLLATE "C",
    path           TEXT COLLATE "C",
    ip             TEXT COLLATE "C",
    leaf_hash      BYTEA NOT NULL CHECK (octet_length(leaf_hash) = 32),
    search_text    TEXT COLLATE "C" NOT NULL,
    words          TSVECTOR NOT NULL,
    pairs          TSVECTOR NOT NULL,
    fields         TSVECTOR NOT NULL,
    -- Ingest refuses an event more than 5 minutes (events.MAX_FUTURE_US) in the future, so
    -- a search from time T reads only partitions with received_at >= T - 5 minutes.
    CONSTRAINT events_occurred_by_receipt CHECK (occurred_at <= received_at + 300000000)
) PARTITION BY RANGE (received_at);
-- result rides along so that counts filtered by result read the index alone (and, from
-- 0002, received_at, which searches bound too).
CREATE INDEX events_org_time ON events (org_id, occurred_at, id) INCLUDE (result);
CREATE INDEX events_org_category_time ON events (org_id, category, occurred_at, id)
    INCLUDE (result);
CREATE INDEX events_org_tokens ON events USING gin (org_id, words, pairs, fields);

CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE UNIQUE INDEX events_default_org_index ON events_default (org_id, idx);
CREATE UNIQUE INDEX events_default_org_id ON events_default (org_id, id);

-- The canonical documents, apart so that scans of events stay narrow; partitioned as events
-- are, and found by (org_id, idx, received_at), which names the partition.
CREATE TABLE event_docs (
    org_id       TEXT COLLATE "C" NOT NULL,
    idx          BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    doc          BYTEA NOT NULL
) PARTITION BY RANGE (received_at);

CREATE TABLE event_docs_default PARTITION OF event_docs DEFAULT;
CREATE UNIQUE INDEX event_docs_default_org_index ON event_docs_default (org_id, idx);

-- The Merkle tree: every leaf hash (level 0, a copy kept apart from the event rows) and
-- every complete subtree; node (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level).
-- No foreign key to orgs on the tables each batch writes: the batch holds the org's row.
CREATE TABLE tree_nodes (
    org_id  TEXT COLLATE "C" NOT NULL,
    level   INTEGER NOT NULL CHECK (level >= 0),
    idx     BIGINT NOT NULL CHECK (idx >= 0),
    hash    BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (org_id, level, idx)
);

-- Every signed checkpoint is kept.
CREATE TABLE checkpoints (
    org_id      TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    size        BIGINT NOT NULL,
    root        BYTEA NOT NULL CHECK (octet_length(root) = 32),
    note        TEXT COLLATE "C" NOT NULL,
    key_id      TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, size)
);

-- The log's verifier keys, current and retired: a rotated key still verifies what it signed.
CREATE TABLE log_keys (
    vkey        TEXT COLLATE "C" PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);

-- Export jobs: a durable queue. A worker claims a job by taking its lease (FOR UPDATE SKIP
-- LOCKED), renews the lease while it works, and another worker takes the job over once a
-- lease expires.
CREATE TABLE exports (
    org_id            TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    id                TEXT COLLATE "C" NOT NULL,
    name              TEXT COLLATE "C" NOT NULL,
    format            TEXT COLLATE "C" NOT NULL,
    params            TEXT COLLATE "C" NOT NULL,
    snapshot_size     BIGINT NOT NULL,
    status            TEXT COLLATE "C" NOT NULL,
    progress          DOUBLE PRECISION NOT NULL DEFAULT 0,
    row_count         BIGINT,
    size_bytes        BIGINT,
    sha256            TEXT COLLATE "C",
    error             TEXT COLLATE "C",
    created_by        TEXT COLLATE "C",
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    expires_at        BIGINT,
    lease_owner       TEXT COLLATE "C",
    lease_expires_at  BIGINT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    file_path         TEXT COLLATE "C",
    PRIMARY KEY (org_id, id)
);
CREATE INDEX exports_org_created ON exports (org_id, created_at);
-- Workers look across orgs for the oldest job to claim and for exports to expire: these
-- partial indexes hold only the few jobs that are waiting, running or awaiting expiry.
CREATE INDEX exports_pending ON exports (org_id, created_at)
    WHERE status IN ('queued', 'running');
CREATE INDEX exports_completed ON exports (org_id, expires_at) WHERE status = 'completed';
-- A worker renews and finishes its job by id.
CREATE INDEX exports_id ON exports (id);
