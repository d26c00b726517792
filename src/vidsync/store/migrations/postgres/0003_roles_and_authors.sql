-- Roles and authors: editors write like the owner, invites carry the role they grant, every event
-- records who wrote it.
ALTER TABLE members DROP CONSTRAINT members_role_check;
ALTER TABLE members ADD CONSTRAINT members_role_check
    CHECK (role IN ('owner', 'editor', 'viewer'));
ALTER TABLE invites ADD COLUMN role TEXT NOT NULL DEFAULT 'viewer'
    CHECK (role IN ('viewer', 'editor'));
-- The author's name is kept as it was when they wrote (like a commit's), so a replayed event is
-- the same as the live one. Before roles only the owner could write: earlier events are theirs.
ALTER TABLE events ADD COLUMN author_id TEXT, ADD COLUMN author_name TEXT;
UPDATE events e SET author_id = p.owner_id, author_name = u.name
    FROM projects p JOIN users u ON u.id = p.owner_id WHERE p.id = e.project_id;
