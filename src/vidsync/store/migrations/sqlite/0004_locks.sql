-- File locks: at most one holder per path, held as a lease. expires_at moves forward while the
-- holder is connected. A lock past it counts as gone, and the server sweeps it (locks_by_expiry).
CREATE TABLE locks (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, path)
) WITHOUT ROWID;
CREATE INDEX locks_by_expiry ON locks(expires_at);
