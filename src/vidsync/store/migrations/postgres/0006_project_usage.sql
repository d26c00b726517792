-- Storage usage as the garbage collector last measured it (content/gc.py), one row per project:
-- a measurement walks the log and the blob directory, seconds for a large project, so a page
-- open, another node or a restarted server reads the last one here instead of measuring again.
CREATE TABLE project_usage (
    project_id TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    live_bytes BIGINT NOT NULL,
    history_bytes BIGINT NOT NULL,
    pending_bytes BIGINT NOT NULL,
    reclaimable_bytes BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    counted_at DOUBLE PRECISION NOT NULL
);
