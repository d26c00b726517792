import { useCallback, useEffect, useState } from 'react';
import type { UploadMessage } from '../lib/eventStream';

/** A file the owner is uploading, as this page has heard of it (`project:upload`). */
export interface Upload {
  path: string;
  size: number;
  readyBytes: number;
  state: UploadMessage['state'];
  /** Bytes per second over the last few seconds; null until two samples are apart. */
  rate: number | null;
  /** [ms, readyBytes] samples of the last RATE_WINDOW_MS, oldest first. */
  samples: [number, number][];
  updatedAt: number;
}

/** The rate is measured over this much recent time, so it follows changes within seconds. */
const RATE_WINDOW_MS = 3_000;
/** A finished upload stays this long ("stored" then the file's own event arrives). */
const KEEP_STORED_MS = 2_000;
const KEEP_FAILED_MS = 10_000;
/** No word for this long: the uploader stopped (messages are not replayed), drop it. */
const STALE_MS = 30_000;

/**
 * Uploads in progress from `project:upload` messages, with rate and time left computed here
 * (the server sends how many bytes it holds; at most 20 messages a second per upload).
 */
export function useUploads(): { uploads: Upload[]; onUpload: (msg: UploadMessage) => void } {
  const [byPath, setByPath] = useState<ReadonlyMap<string, Upload>>(() => new Map());

  const onUpload = useCallback((msg: UploadMessage) => {
    const now = Date.now();
    setByPath((prev) => {
      const next = new Map(prev);
      const old = msg.state === 'started' ? undefined : prev.get(msg.path);
      const samples = [...(old?.samples ?? []), [now, msg.ready_bytes] as [number, number]].filter(
        ([t], i, all) => i === all.length - 1 || now - t <= RATE_WINDOW_MS,
      );
      const [t0, b0] = samples[0]!;
      next.set(msg.path, {
        path: msg.path,
        size: msg.size,
        readyBytes: msg.ready_bytes,
        state: msg.state,
        rate: now - t0 >= 250 ? ((msg.ready_bytes - b0) * 1000) / (now - t0) : (old?.rate ?? null),
        samples,
        updatedAt: now,
      });
      return next;
    });
  }, []);

  // Finished, failed and silent uploads leave after a while.
  useEffect(() => {
    const timer = setInterval(() => {
      const now = Date.now();
      setByPath((prev) => {
        const keep = [...prev.values()].filter((u) => {
          const age = now - u.updatedAt;
          if (u.state === 'stored') return age < KEEP_STORED_MS;
          if (u.state === 'failed') return age < KEEP_FAILED_MS;
          return age < STALE_MS;
        });
        return keep.length === prev.size ? prev : new Map(keep.map((u) => [u.path, u]));
      });
    }, 500);
    return () => clearInterval(timer);
  }, []);

  return { uploads: [...byPath.values()], onUpload };
}
