-- The first schema: accounts, projects, members, invites, the event log, live files.
-- Paths use the "C" collation: byte order, as SQLite compares them, so a prefix is one index range
-- ('clips/' <= path < 'clips0') and listings come out in the same order on both backends.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX tokens_by_user ON tokens (user_id);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    -- The per-project counter: append_events bumps it in the transaction that writes the events.
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_activity_at TIMESTAMPTZ
);
CREATE INDEX projects_by_owner ON projects (owner_id);

CREATE TABLE members (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'viewer')),
    joined_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE invites (
    code TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    max_uses INTEGER,
    uses INTEGER NOT NULL DEFAULT 0,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX invites_by_project ON invites (project_id);

CREATE TABLE events (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    op TEXT NOT NULL,
    hash TEXT,
    size BIGINT,
    mtime BIGINT,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, seq)
);

CREATE TABLE files (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path TEXT COLLATE "C" NOT NULL,
    hash TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime BIGINT,
    seq BIGINT NOT NULL,
    PRIMARY KEY (project_id, path)
);

CREATE TABLE idempotency (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, key)
);
