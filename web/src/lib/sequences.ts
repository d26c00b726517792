// Frame sequences: a folder of `sh010_comp.0000001.exr` … `sh010_comp.0014400.exr` reads better as
// one line, `sh010_comp.[0000001-0014400].exr` (14,400 frames). The rule is the same as the CLI's
// (src/vidsync/sequences.py): the last run of digits in a name is the frame number; files of one
// folder that share what comes before and after it, and the number's width, make a sequence when
// there are at least MIN_FRAMES of them and the extension is an image format that is stored one
// frame per file. Camera clips (`A001_C004.mov`) are never grouped: people look for each one.

/** Fewer files than this stay separate lines. */
export const MIN_FRAMES = 3;

/** Formats that hold one frame per file (VFX, scans, stills, raw camera frames). */
const FRAME_EXTENSIONS = new Set([
  'exr', 'dpx', 'cin', 'tif', 'tiff', 'png', 'jpg', 'jpeg', 'tga', 'bmp', 'jp2', 'j2c', 'hdr',
  'sgi', 'rgb', 'dng', 'ari', 'webp', 'psd', 'heic', 'avif',
]);

const FRAME_RE = /^(.*?)(\d+)(\.[A-Za-z0-9]+)$/;

export interface FrameName {
  /** Identifies the sequence within its folder: prefix, digit width and suffix. */
  key: string;
  prefix: string;
  suffix: string;
  digits: string;
  frame: number;
}

/** The frame number and sequence key of a file name, or null if it cannot be a frame. */
export function parseFrameName(name: string): FrameName | null {
  const m = FRAME_RE.exec(name);
  if (!m) return null;
  const [, prefix, digits, suffix] = m as unknown as [string, string, string, string];
  if (!FRAME_EXTENSIONS.has(suffix.slice(1).toLowerCase())) return null;
  return { key: `${prefix}\u0000${digits.length}\u0000${suffix}`, prefix, suffix, digits, frame: Number(digits) };
}

/** `sh010_comp.[0000001-0014400].exr` from the first and last frames' names. */
export function sequenceLabel(first: FrameName, last: FrameName): string {
  return `${first.prefix}[${first.digits}-${last.digits}]${first.suffix}`;
}
