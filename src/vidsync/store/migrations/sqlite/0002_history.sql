-- Version history: a path's events newest first, "the last event of each path", and "what a folder
-- held as of seq N" are index ranges on (project_id, path, seq) instead of scans of the whole log.
CREATE INDEX events_by_path ON events(project_id, path, seq);
