-- A search bounds received_at as well as occurred_at (the bound that skips older
-- partitions: docs/operations.md), so the time indexes carry received_at: a count by time,
-- category or result then reads the index alone (an index-only scan) instead of every row
-- of the window. Dropping an index of the partitioned table drops it on every partition;
-- creating one creates it on each.
DROP INDEX events_org_time;
DROP INDEX events_org_category_time;
CREATE INDEX events_org_time ON events (org_id, occurred_at, id) INCLUDE (result, received_at);
CREATE INDEX events_org_category_time ON events (org_id, category, occurred_at, id)
    INCLUDE (result, received_at);
