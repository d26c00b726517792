// What the browser can play in the page: the same allow-list as the server's
// (src/vidsync/content/media.py), which serves these, and only these, with their media type.
// Anything else is offered as a download.

const MEDIA_TYPES: Record<string, string> = {
  mp4: 'video/mp4',
  m4v: 'video/mp4',
  webm: 'video/webm',
  ogv: 'video/ogg',
  mp3: 'audio/mpeg',
  m4a: 'audio/mp4',
  aac: 'audio/aac',
  wav: 'audio/wav',
  flac: 'audio/flac',
  oga: 'audio/ogg',
  ogg: 'audio/ogg',
  opus: 'audio/ogg',
};

/** The media type the server will send for this path, or null if it is not playable. */
export function mediaType(path: string): string | null {
  const dot = path.lastIndexOf('.');
  if (dot < 0 || dot < path.lastIndexOf('/')) return null;
  return MEDIA_TYPES[path.slice(dot + 1).toLowerCase()] ?? null;
}

export function isPlayable(path: string): boolean {
  return mediaType(path) !== null;
}
