import type { Upload } from '../hooks/useUploads';
import { formatBytes, formatDuration } from '../lib/format';

/**
 * Files the owner is uploading right now, each with a progress bar, rate and time left. They
 * reach this page before their change does (the change is posted once the upload is complete).
 */
export function UploadProgress({ uploads }: { uploads: readonly Upload[] }) {
  if (uploads.length === 0) return null;
  return (
    <section className="uploads" aria-label="Uploads in progress">
      <ul>
        {uploads.map((u) => {
          const pct = u.size > 0 ? Math.floor((u.readyBytes / u.size) * 100) : 100;
          const left = u.rate && u.rate > 0 ? (u.size - u.readyBytes) / u.rate : null;
          return (
            <li key={u.path} className={`upload upload-${u.state}`} data-path={u.path}>
              <span className="upload-path" title={u.path}>
                {u.path}
              </span>
              <progress max={u.size || 1} value={u.readyBytes} aria-label={`Upload of ${u.path}`} />
              <span className="upload-meta">
                {u.state === 'stored'
                  ? 'Uploaded'
                  : u.state === 'failed'
                    ? 'Upload failed; the owner’s agent will send it again'
                    : `Uploading ${pct}% · ${formatBytes(u.readyBytes)} of ${formatBytes(u.size)}` +
                      (u.rate !== null ? ` · ${formatBytes(u.rate)}/s` : '') +
                      (left !== null ? ` · ${formatDuration(left)} left` : '')}
              </span>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
