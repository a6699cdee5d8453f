-- The log head keeps the received_at of the org's last event: a batch is stamped while it
-- holds the org's row, never earlier than that, so that received_at does not fall as the
-- index rises (the partitions by received_at rely on it), whatever the clocks of the
-- machines that write. Filled in from each org's newest event; 0 for an org with none.
ALTER TABLE orgs ADD COLUMN last_received_at BIGINT NOT NULL DEFAULT 0;
UPDATE orgs o SET last_received_at = e.received_at
    FROM events e WHERE e.org_id = o.id AND e.idx = o.log_size - 1;
