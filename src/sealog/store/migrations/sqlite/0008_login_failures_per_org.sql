-- Failed sign-ins are counted per org and email: a sign-in names its org and checks that
-- org's account alone, so a success in one org must not clear another org's count. A
-- failure counted before the upgrade goes on counting for each org the email has an
-- account in; one for an email that is no one's had nothing to guard and is dropped.
CREATE TABLE login_failures_per_org (
    org_id  TEXT NOT NULL,
    email   TEXT NOT NULL,
    at      INTEGER NOT NULL
);
INSERT INTO login_failures_per_org (org_id, email, at)
    SELECT u.org_id, f.email, f.at FROM login_failures f
    JOIN users u ON u.email = f.email AND u.removed_at IS NULL;
DROP TABLE login_failures;
ALTER TABLE login_failures_per_org RENAME TO login_failures;
CREATE INDEX login_failures_org_email ON login_failures(org_id, email, at);
CREATE INDEX login_failures_at ON login_failures(at);
-- Accounts are looked up by org and email (users_live_org_email), never by email alone.
DROP INDEX users_email;
