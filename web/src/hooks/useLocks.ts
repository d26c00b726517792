import { useCallback, useState } from 'react';
import type { Lock } from '../lib/api';
import type { LockChange } from '../lib/eventStream';

/**
 * The project's locks by path, kept from the stream: a full list after each (re)subscription
 * (or HTTP poll) replaces what was known, and each `project:lock` then changes one path.
 */
export function useLocks(): {
  locks: ReadonlyMap<string, Lock>;
  replaceLocks: (locks: Lock[]) => void;
  changeLock: (change: LockChange) => void;
} {
  const [locks, setLocks] = useState<ReadonlyMap<string, Lock>>(() => new Map());
  const replaceLocks = useCallback(
    (list: Lock[]) => setLocks(new Map(list.map((lock) => [lock.path, lock]))),
    [],
  );
  const changeLock = useCallback((change: LockChange) => {
    setLocks((prev) => {
      const next = new Map(prev);
      if (change.lock) next.set(change.path, change.lock);
      else next.delete(change.path);
      return next;
    });
  }, []);
  return { locks, replaceLocks, changeLock };
}
