import type { Op, ProjectEvent } from '../lib/api';
import { formatBytes, formatDateTime, formatTime } from '../lib/format';

const OP_LABEL: Record<Op, string> = { create: 'Added', update: 'Updated', delete: 'Deleted' };

/** Newest first. The parent keeps the list bounded; the list scrolls, so it takes focus for
 * keyboard scrolling. */
export function ActivityFeed({ events }: { events: readonly ProjectEvent[] }) {
  if (events.length === 0) return <p className="empty">No activity yet.</p>;
  return (
    <ol className="feed" tabIndex={0} aria-label="Activity, newest first">
      {events.map((event) => {
        const at = new Date(event.created_at);
        const { change } = event;
        return (
          <li key={event.seq} className={`feed-item op-${change.op}`} data-seq={event.seq}>
            <span className="feed-op">{OP_LABEL[change.op]}</span>
            <span className="feed-path">{change.path}</span>
            <span className="feed-meta">
              {event.author && (
                <>
                  <span className="feed-author">by {event.author.name}</span> ·{' '}
                </>
              )}
              <time dateTime={event.created_at} title={formatDateTime(at)}>
                {formatTime(at)}
              </time>
              {change.op !== 'delete' && change.size !== null && <> · {formatBytes(change.size)}</>}
            </span>
          </li>
        );
      })}
    </ol>
  );
}
