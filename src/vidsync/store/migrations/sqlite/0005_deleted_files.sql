-- The deleted files (a path whose last event is a delete and that had content once), kept as
-- append_events writes the log, so listing them is a range of this table instead of a GROUP BY
-- over the whole log: the delete that removed the path, and its last version (to restore it).
CREATE TABLE deleted_files (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    deleted_seq INTEGER NOT NULL,
    version_seq INTEGER NOT NULL,
    PRIMARY KEY (project_id, path)
) WITHOUT ROWID;
INSERT INTO deleted_files
SELECT project_id, path, seq, version_seq FROM (
    SELECT last.project_id, last.path, last.seq,
           (SELECT MAX(x.seq) FROM events x WHERE x.project_id = last.project_id
            AND x.path = last.path AND x.hash IS NOT NULL) AS version_seq
    FROM (SELECT project_id, path, MAX(seq) AS seq FROM events GROUP BY project_id, path) last
    JOIN events d ON d.project_id = last.project_id AND d.seq = last.seq AND d.op = 'delete')
WHERE version_seq IS NOT NULL;
