import { useCallback, useEffect, useRef, useState } from 'react';
import type { ProjectEvent } from '../lib/api';

export const BADGE_VISIBLE_MS = 2_000;
export const BADGE_FADE_MS = 400;

export interface SyncBadgeState {
  /** Path of the latest event. */
  path: string;
  /** Who wrote it, if known. */
  author: string | null;
  /** Events synced since the badge appeared, the latest included. */
  count: number;
  fading: boolean;
}

/**
 * One badge, not one per event: each arrival updates it in place and restarts a single
 * timer, so a burst of hundreds of events gives one badge that fades 2 s after the last of
 * them. (The first design set one timer per event and deleted from a Map it had already
 * handed to React, so badges piled up and never left.)
 */
export function useSyncBadge(): {
  badge: SyncBadgeState | null;
  showEvents: (events: ProjectEvent[]) => void;
} {
  const [badge, setBadge] = useState<SyncBadgeState | null>(null);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  useEffect(() => () => clearTimeout(timer.current), []);

  const showEvents = useCallback((events: ProjectEvent[]) => {
    const last = events[events.length - 1];
    if (!last) return;
    setBadge((prev) => ({
      path: last.change.path,
      author: last.author?.name ?? null,
      count: (prev && !prev.fading ? prev.count : 0) + events.length,
      fading: false,
    }));
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      setBadge((prev) => prev && { ...prev, fading: true });
      timer.current = setTimeout(() => setBadge(null), BADGE_FADE_MS);
    }, BADGE_VISIBLE_MS);
  }, []);

  return { badge, showEvents };
}
