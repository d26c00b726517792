import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import type { ProjectEvent } from '../lib/api';
import {
  type ConnectionState,
  ProjectEventStream,
  type StreamOptions,
  type UploadMessage,
} from '../lib/eventStream';

/** Lock and role notices, besides the events. */
export type ProjectNotices = Pick<StreamOptions, 'onLocks' | 'onLock' | 'onRole'>;

/**
 * Follows a project's events from `sinceSeq` on (the seq of the snapshot the page shows).
 * Pass `sinceSeq = null` until that snapshot has loaded.
 *
 * Unlike the first design of this hook, the connection depends only on the project and the
 * token: `onEvents` may be a new function on every render without reconnecting, and a new
 * connection (after a drop, or a new token) resumes after the last event delivered, so missed
 * events arrive and none arrives twice.
 */
export function useProjectEvents(
  projectId: string,
  token: string,
  sinceSeq: number | null,
  onEvents: (events: ProjectEvent[]) => void,
  onUpload?: (msg: UploadMessage) => void,
  notices: ProjectNotices = {},
): { state: ConnectionState; retryNow: () => void } {
  const [state, setState] = useState<ConnectionState>({ kind: 'connecting' });
  const onEventsRef = useRef(onEvents);
  const onUploadRef = useRef(onUpload);
  const noticesRef = useRef(notices);
  useLayoutEffect(() => {
    onEventsRef.current = onEvents;
    onUploadRef.current = onUpload;
    noticesRef.current = notices;
  });

  // Survives reconnections and effect re-runs; only the project's first snapshot seq seeds it.
  const lastSeqRef = useRef<{ projectId: string; seq: number } | null>(null);
  const streamRef = useRef<ProjectEventStream | null>(null);
  const ready = sinceSeq !== null;

  useEffect(() => {
    if (sinceSeq === null) return;
    if (lastSeqRef.current?.projectId !== projectId) lastSeqRef.current = { projectId, seq: sinceSeq };
    const resume = lastSeqRef.current;
    const stream = new ProjectEventStream({
      projectId,
      token,
      sinceSeq: resume.seq,
      onEvents: (events) => {
        resume.seq = events[events.length - 1]!.seq;
        onEventsRef.current(events);
      },
      onState: setState,
      onUpload: (msg) => onUploadRef.current?.(msg),
      onLocks: (locks) => noticesRef.current.onLocks?.(locks),
      onLock: (change) => noticesRef.current.onLock?.(change),
      onRole: (role) => noticesRef.current.onRole?.(role),
    });
    streamRef.current = stream;
    stream.start();
    return () => {
      stream.stop();
      streamRef.current = null;
    };
    // sinceSeq matters only once, when it stops being null; `ready` captures that.
  }, [projectId, token, ready]);

  const retryNow = useCallback(() => streamRef.current?.retryNow(), []);
  return { state, retryNow };
}
