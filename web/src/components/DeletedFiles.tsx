import { useCallback, useEffect, useRef, useState } from 'react';
import { type DeletedFile, ApiError, api } from '../lib/api';
import { formatBytes, formatDateTime } from '../lib/format';

interface Props {
  projectId: string;
  token: string;
  canRestore: boolean;
  /** The log's last seq as this page knows it: the list reloads when it moves. */
  lastSeq: number | null;
  showVersions: (path: string) => void;
}

/** Files deleted from the project, each with its last version: restore it, or see them all. */
export function DeletedFiles({ projectId, token, canRestore, lastSeq, showVersions }: Props) {
  const [files, setFiles] = useState<DeletedFile[] | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);

  // One request at a time: events that arrive meanwhile ask for one more, not one each (the
  // list is a query over the whole log, and a busy project has many events a second).
  const loading = useRef<{ again: boolean } | null>(null);
  const load = useCallback(async () => {
    if (loading.current) {
      loading.current.again = true;
      return;
    }
    const state = (loading.current = { again: false });
    try {
      do {
        state.again = false;
        const page = await api.deleted(token, projectId);
        setFiles(page.files);
        setHasMore(page.has_more);
      } while (state.again);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      loading.current = null;
    }
  }, [token, projectId]);

  // Once the page knows where the log stands (the tree first), then as it moves.
  useEffect(() => {
    if (lastSeq !== null) void load();
  }, [load, lastSeq]);

  async function loadMore() {
    const last = files?.[files.length - 1];
    if (!last) return;
    const page = await api.deleted(token, projectId, last.path);
    setFiles((prev) => [...(prev ?? []), ...page.files]);
    setHasMore(page.has_more);
  }

  async function restore(f: DeletedFile) {
    setBusy(f.path);
    setError(null);
    try {
      await api.restore(token, projectId, f.path, f.last_version.seq);
      await load();
    } catch (err) {
      setError(
        err instanceof ApiError && err.code === 'expired'
          ? `${f.path} is no longer kept on the server.`
          : err instanceof Error
            ? err.message
            : String(err),
      );
    } finally {
      setBusy(null);
    }
  }

  return (
    <section aria-labelledby="deleted-heading" className="panel deleted-panel">
      <h2 id="deleted-heading">Deleted files</h2>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {files === null ? (
        <p aria-busy="true">Loading deleted files…</p>
      ) : files.length === 0 ? (
        <p className="empty">No deleted files.</p>
      ) : (
        <ul className="deleted-files">
          {files.map((f) => {
            const when = new Date(f.deleted_at);
            const v = f.last_version;
            return (
              <li key={f.path} className="deleted-file" data-path={f.path}>
                <div className="version-what">
                  <span className="deleted-path">{f.path}</span>
                  <span className="version-note">
                    {' '}
                    deleted <time dateTime={when.toISOString()}>{formatDateTime(when)}</time>
                    {v.size !== null && <> · {formatBytes(v.size)}</>}
                    {!v.available && <> · no longer kept</>}
                  </span>
                </div>
                <span className="deleted-actions">
                  <button type="button" onClick={() => showVersions(f.path)}>
                    Versions
                  </button>
                  {canRestore && v.available && (
                    <button
                      type="button"
                      disabled={busy !== null}
                      aria-label={`Restore ${f.path}`}
                      onClick={() => void restore(f)}
                    >
                      {busy === f.path ? 'Restoring…' : 'Restore'}
                    </button>
                  )}
                </span>
              </li>
            );
          })}
        </ul>
      )}
      {hasMore && (
        <button type="button" onClick={() => void loadMore()}>
          More
        </button>
      )}
    </section>
  );
}
