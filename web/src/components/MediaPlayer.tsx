import { useCallback, useEffect, useRef, useState } from 'react';
import { type PlayLink, api } from '../lib/api';

interface Props {
  token: string;
  projectId: string;
  path: string;
  onClose: () => void;
  /** Offered when the browser cannot play the file. */
  onDownload?: () => void;
}

/**
 * Plays a project file in a modal dialog: a <video> (or <audio>) whose src is a signed play link,
 * so the browser fetches ranges as it plays and seeks, never the whole file up front. A link lasts
 * an hour; if it runs out mid-playback, a new one is fetched and playback goes on from there.
 */
export function MediaPlayer({ token, projectId, path, onClose, onDownload }: Props) {
  const dialogRef = useRef<HTMLDialogElement>(null);
  const mediaRef = useRef<HTMLVideoElement & HTMLAudioElement>(null);
  const resumeAt = useRef<number | null>(null);
  const [link, setLink] = useState<PlayLink | null>(null);
  const [error, setError] = useState<string | null>(null);
  const name = path.slice(path.lastIndexOf('/') + 1);

  const load = useCallback(() => {
    api
      .playLink(token, projectId, path)
      .then(setLink)
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)));
  }, [token, projectId, path]);

  useEffect(() => {
    if (dialogRef.current && !dialogRef.current.open) dialogRef.current.showModal();
    load();
  }, [load]);

  const onMediaError = () => {
    const media = mediaRef.current;
    if (link && media && Date.parse(link.expires_at) <= Date.now() + 10_000) {
      resumeAt.current = media.currentTime;
      load();
      return;
    }
    setError(`This browser cannot play ${name} (its format or codec). Download it instead.`);
  };
  const onLoadedMetadata = () => {
    const media = mediaRef.current;
    if (media && resumeAt.current !== null) {
      media.currentTime = resumeAt.current;
      resumeAt.current = null;
      void media.play().catch(() => {});
    }
  };

  const isVideo = link?.media_type.startsWith('video/') ?? false;
  return (
    <dialog ref={dialogRef} className="player" aria-labelledby="player-title" onClose={onClose}>
      <div className="player-head">
        <h2 id="player-title" title={path}>
          {name}
        </h2>
        <button type="button" onClick={() => dialogRef.current?.close()}>
          Close
        </button>
      </div>
      {error ? (
        <div role="alert" className="error player-error">
          <p>{error}</p>
          {onDownload && (
            <button type="button" onClick={onDownload}>
              Download {name}
            </button>
          )}
        </div>
      ) : link === null ? (
        <p aria-busy="true">Loading…</p>
      ) : isVideo ? (
        <video
          ref={mediaRef}
          className="player-media"
          src={link.url}
          poster={link.poster_url ?? undefined}
          controls
          autoPlay
          preload="metadata"
          onError={onMediaError}
          onLoadedMetadata={onLoadedMetadata}
        />
      ) : (
        <audio
          ref={mediaRef}
          className="player-media"
          src={link.url}
          controls
          autoPlay
          preload="metadata"
          onError={onMediaError}
          onLoadedMetadata={onLoadedMetadata}
        />
      )}
    </dialog>
  );
}
