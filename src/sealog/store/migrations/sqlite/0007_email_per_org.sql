-- An email belongs to at most one live user of each org, no longer of all orgs: the same
-- person may be a user of several orgs, and adding a member neither depends on nor tells of
-- another org's users. Sign-in looks accounts up by email alone (users_email).
DROP INDEX users_live_email;
CREATE UNIQUE INDEX users_live_org_email ON users(org_id, email) WHERE removed_at IS NULL;
CREATE INDEX users_email ON users(email) WHERE removed_at IS NULL;
