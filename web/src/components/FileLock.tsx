import { useState } from 'react';
import { type Lock, ApiError, api } from '../lib/api';
import { formatDateTime } from '../lib/format';

/** A padlock, closed or open (drawn: emoji fonts are not everywhere). */
function LockIcon({ open = false }: { open?: boolean }) {
  return (
    <svg className="lock-icon" viewBox="0 0 16 16" aria-hidden="true" focusable="false">
      <path
        d={open ? 'M5 7V5a3 3 0 0 1 5.8-1' : 'M5 7V5a3 3 0 0 1 6 0v2'}
        fill="none"
        stroke="currentColor"
        strokeWidth="1.6"
      />
      <rect x="3" y="7" width="10" height="7.5" rx="1.5" fill="currentColor" />
    </svg>
  );
}

/** "Locked by Ana" beside a file's name. */
export function LockBadge({ lock, mine }: { lock: Lock; mine: boolean }) {
  const who = mine ? 'you' : lock.user.name;
  return (
    <span
      className={mine ? 'lock-badge mine' : 'lock-badge'}
      title={`Locked by ${who} since ${formatDateTime(new Date(lock.acquired_at))}`}
      data-lock-holder={lock.user.id}
    >
      <LockIcon /> <span className="visually-hidden">Locked by </span>
      {who}
    </span>
  );
}

interface ControlsProps {
  projectId: string;
  token: string;
  path: string;
  lock: Lock | undefined;
  userId: string | undefined;
  /** Owners and editors may lock; the owner may also break anyone's lock. */
  canLock: boolean;
  isOwner: boolean;
  onError: (message: string | null) => void;
}

/** Lock / Unlock / Break lock for one file; the lock itself comes back as a live event. */
export function LockControls({ projectId, token, path, lock, userId, canLock, isOwner, onError }: ControlsProps) {
  const [busy, setBusy] = useState(false);
  const mine = lock !== undefined && lock.user.id === userId;

  async function run(action: () => Promise<unknown>, what: string) {
    setBusy(true);
    onError(null);
    try {
      await action();
    } catch (err) {
      onError(`Cannot ${what} ${path}: ${err instanceof ApiError ? err.message : String(err)}`);
    } finally {
      setBusy(false);
    }
  }

  if (lock === undefined) {
    if (!canLock) return null;
    return (
      <button
        type="button"
        className="icon-button"
        disabled={busy}
        aria-label={`Lock ${path}`}
        title={`Lock ${path}: nobody else can change it until you unlock it`}
        onClick={() => void run(() => api.lock(token, projectId, path), 'lock')}
      >
        <LockIcon />
      </button>
    );
  }
  if (!mine && !isOwner) return null;
  const label = mine ? `Unlock ${path}` : `Break ${lock.user.name}'s lock on ${path}`;
  return (
    <button
      type="button"
      className={mine ? 'icon-button' : 'icon-button danger'}
      disabled={busy}
      aria-label={label}
      title={label}
      onClick={() => void run(() => api.unlock(token, projectId, path), mine ? 'unlock' : 'break the lock on')}
    >
      {mine ? <LockIcon open /> : <span aria-hidden="true">✂</span>}
    </button>
  );
}
