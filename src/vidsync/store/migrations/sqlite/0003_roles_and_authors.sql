-- Roles and authors: editors write like the owner, invites carry the role they grant, every event
-- records who wrote it.
-- SQLite cannot change a CHECK constraint in place, so members is rebuilt with the new role.
CREATE TABLE members_new (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id)
) WITHOUT ROWID;
INSERT INTO members_new SELECT project_id, user_id, role, joined_at FROM members;
DROP TABLE members;
ALTER TABLE members_new RENAME TO members;
CREATE INDEX members_by_user ON members(user_id);
ALTER TABLE invites ADD COLUMN role TEXT NOT NULL DEFAULT 'viewer'
    CHECK (role IN ('viewer', 'editor'));
-- The author's name is kept as it was when they wrote (like a commit's), so a replayed event is
-- the same as the live one. Before roles only the owner could write: earlier events are theirs.
ALTER TABLE events ADD COLUMN author_id TEXT;
ALTER TABLE events ADD COLUMN author_name TEXT;
UPDATE events SET
    author_id = (SELECT p.owner_id FROM projects p WHERE p.id = events.project_id),
    author_name = (SELECT u.name FROM projects p JOIN users u ON u.id = p.owner_id
                   WHERE p.id = events.project_id);
