-- Events are re-keyed by time, and each org gets its own full-text index (made by the
-- store after this script, see SQLiteStore._after_migration) whose row ids are those keys.
-- A time window is then a row-id range of the org's index, which counts a term's matches
-- in the window without reading a single event row.
--
-- seq = occurred_at in whole milliseconds * 2^21 + the event's place among those of the
-- same millisecond (2,097,152 per millisecond).
-- keys_text goes: the qualifiers now have exact field tokens in the new index.

ALTER TABLE orgs ADD COLUMN num INTEGER;
UPDATE orgs SET num = (SELECT count(*) FROM orgs o WHERE o.rowid <= orgs.rowid);
CREATE UNIQUE INDEX orgs_num ON orgs(num);

CREATE TABLE seq_map (old INTEGER PRIMARY KEY, new INTEGER NOT NULL);
INSERT INTO seq_map (old, new)
    SELECT seq, (occurred_at / 1000) * 2097152
                + row_number() OVER (PARTITION BY occurred_at / 1000 ORDER BY seq) - 1
    FROM events;

CREATE TABLE events_keyed (
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
    search_text    TEXT NOT NULL
);
INSERT INTO events_keyed
    SELECT m.new, e.org_id, e.idx, e.id, e.occurred_at, e.category, e.result, e.action,
           e.actor_id, e.actor_email, e.actor_name, e.resource_type, e.resource_id,
           e.method, e.path, e.ip, e.leaf_hash, e.search_text
    FROM events e JOIN seq_map m ON m.old = e.seq
    ORDER BY m.new;

CREATE TABLE event_docs_keyed (
    seq  INTEGER PRIMARY KEY,
    doc  BLOB NOT NULL
);
INSERT INTO event_docs_keyed
    SELECT m.new, d.doc FROM event_docs d JOIN seq_map m ON m.old = d.seq ORDER BY m.new;

DROP TABLE events_fts;
DROP TABLE events;
DROP TABLE event_docs;
DROP TABLE seq_map;
ALTER TABLE events_keyed RENAME TO events;
ALTER TABLE event_docs_keyed RENAME TO event_docs;
CREATE UNIQUE INDEX events_org_index ON events(org_id, idx);
CREATE UNIQUE INDEX events_org_id ON events(org_id, id);
-- result rides along so that counts filtered by result read the index alone.
CREATE INDEX events_org_time ON events(org_id, occurred_at, id, result);
CREATE INDEX events_org_category_time ON events(org_id, category, occurred_at, id, result);
