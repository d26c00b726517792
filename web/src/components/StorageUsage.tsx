import type { Usage } from '../lib/api';
import { formatBytes } from '../lib/format';

function days(seconds: number): string {
  const d = seconds / 86400;
  return d >= 1 ? `${Math.round(d)} ${Math.round(d) === 1 ? 'day' : 'days'}` : `${Math.round(seconds / 3600)} h`;
}

/** What the project stores on the server: live files, restorable history, and what the next
 * collection frees; blocks shared between versions count once. */
export function StorageUsage({ usage }: { usage: Usage }) {
  const pct = (n: number) => `${Math.min(100, (100 * n) / Math.max(1, usage.quota_bytes))}%`;
  return (
    <section aria-labelledby="usage-heading" className="panel usage-panel">
      <h2 id="usage-heading">Storage</h2>
      <div className="usage-bar" aria-hidden="true">
        <span className="usage-live" style={{ width: pct(usage.live_bytes) }} />
        <span className="usage-history" style={{ width: pct(usage.history_bytes) }} />
        <span className="usage-other" style={{ width: pct(usage.pending_bytes + usage.reclaimable_bytes) }} />
      </div>
      <dl className="usage">
        <dt>Current files</dt>
        <dd data-usage="live">{formatBytes(usage.live_bytes)}</dd>
        <dt>Earlier versions (kept {days(usage.retention_s)})</dt>
        <dd data-usage="history">{formatBytes(usage.history_bytes)}</dd>
        <dt>Freed at the next cleanup</dt>
        <dd data-usage="reclaimable">{formatBytes(usage.reclaimable_bytes)}</dd>
        <dt>Stored, of the {formatBytes(usage.quota_bytes)} quota</dt>
        <dd data-usage="stored">{formatBytes(usage.stored_bytes)}</dd>
      </dl>
    </section>
  );
}
