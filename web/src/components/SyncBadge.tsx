import type { SyncBadgeState } from '../hooks/useSyncBadge';

export function SyncBadge({ badge }: { badge: SyncBadgeState | null }) {
  // The live region stays mounted so that screen readers announce each new badge text.
  return (
    <div className="badge-slot" role="status" aria-atomic="true">
      {badge && (
        <span className={badge.fading ? 'sync-badge fading' : 'sync-badge'}>
          <span aria-hidden="true">✓ </span>
          <span className="sync-badge-text">Synced: {badge.path}</span>
          {badge.author && <span className="sync-badge-author"> by {badge.author}</span>}
          {badge.count > 1 && <span className="sync-badge-more"> and {badge.count - 1} more</span>}
        </span>
      )}
    </div>
  );
}
