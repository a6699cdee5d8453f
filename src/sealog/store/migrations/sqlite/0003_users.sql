-- People who sign in to the web UI, their sessions, and recent failed sign-ins.
-- An email belongs to one live user; a removed user keeps its row (events name it).
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES orgs(id),
    email          TEXT NOT NULL,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    removed_at     INTEGER
);
CREATE UNIQUE INDEX users_live_email ON users(email) WHERE removed_at IS NULL;
CREATE INDEX users_org ON users(org_id, created_at);

-- Only a hash of the session token is stored; id is the public name events use.
CREATE TABLE sessions (
    token_hash  BLOB PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users(id),
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE login_failures (
    email  TEXT NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX login_failures_email ON login_failures(email, at);
CREATE INDEX login_failures_at ON login_failures(at);
