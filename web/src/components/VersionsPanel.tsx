import { useCallback, useEffect, useState } from 'react';
import { type Version, ApiError, api } from '../lib/api';
import { formatBytes, formatDateTime } from '../lib/format';

interface Props {
  projectId: string;
  token: string;
  /** The file whose versions are shown. */
  path: string;
  /** Owner and editors see Restore buttons. */
  canRestore: boolean;
  /** The log's last seq as this page knows it: the list reloads when it moves. */
  lastSeq: number | null;
  onClose: () => void;
}

/**
 * A file's versions, newest first, each with who made it and when, and a Restore button for the
 * ones whose content the server still keeps. Restoring appends a new change: the file tree and
 * every mirror pick it up like any other edit.
 */
export function VersionsPanel({ projectId, token, path, canRestore, lastSeq, onClose }: Props) {
  const [versions, setVersions] = useState<Version[] | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [busy, setBusy] = useState<number | null>(null);

  const load = useCallback(async () => {
    try {
      const page = await api.history(token, projectId, path);
      setVersions(page.versions);
      setHasMore(page.has_more);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }, [token, projectId, path]);

  useEffect(() => {
    void load();
  }, [load, lastSeq]);

  async function loadOlder() {
    const last = versions?.[versions.length - 1];
    if (!last) return;
    const page = await api.history(token, projectId, path, last.seq);
    setVersions((prev) => [...(prev ?? []), ...page.versions]);
    setHasMore(page.has_more);
  }

  async function restore(v: Version) {
    setBusy(v.seq);
    setError(null);
    setStatus(null);
    try {
      const res = await api.restore(token, projectId, v.path, v.seq);
      setStatus(
        res.results.length
          ? `Restored the version of ${formatDateTime(new Date(v.created_at))} (event ${res.last_seq}).`
          : 'This version is already the current one.',
      );
      await load();
    } catch (err) {
      setError(
        err instanceof ApiError && err.code === 'expired'
          ? 'This version is no longer kept on the server.'
          : err instanceof Error
            ? err.message
            : String(err),
      );
    } finally {
      setBusy(null);
    }
  }

  const current = versions?.[0];
  return (
    <section aria-labelledby="versions-heading" className="panel versions-panel">
      <div className="panel-head">
        <h2 id="versions-heading">Versions of {path}</h2>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {status && (
        <p role="status" className="notice">
          {status}
        </p>
      )}
      {versions === null ? (
        <p aria-busy="true">Loading versions…</p>
      ) : versions.length === 0 ? (
        <p className="empty">This path has no history.</p>
      ) : (
        <ol className="versions">
          {versions.map((v) => {
            const when = new Date(v.created_at);
            const isCurrent = v === current && v.op !== 'delete';
            return (
              <li key={v.seq} className={`version ${v.op}`} data-seq={v.seq}>
                <div className="version-what">
                  <span className="version-op">
                    {v.op === 'delete' ? 'Deleted' : v.op === 'create' ? 'Created' : 'Changed'}
                  </span>{' '}
                  by <span className="version-author">{v.author?.name ?? 'someone'}</span>{' '}
                  <time dateTime={when.toISOString()}>{formatDateTime(when)}</time>
                  {v.size !== null && <span className="version-size"> · {formatBytes(v.size)}</span>}
                  {isCurrent && <span className="version-note"> · current</span>}
                  {v.op !== 'delete' && !v.available && (
                    <span className="version-note"> · no longer kept</span>
                  )}
                </div>
                {canRestore && v.op !== 'delete' && v.available && !isCurrent && (
                  <button
                    type="button"
                    disabled={busy !== null}
                    aria-label={`Restore the version of ${formatDateTime(when)}`}
                    onClick={() => void restore(v)}
                  >
                    {busy === v.seq ? 'Restoring…' : 'Restore'}
                  </button>
                )}
              </li>
            );
          })}
        </ol>
      )}
      {hasMore && (
        <button type="button" onClick={() => void loadOlder()}>
          Older versions
        </button>
      )}
    </section>
  );
}
