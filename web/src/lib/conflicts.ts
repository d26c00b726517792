/**
 * Conflict copies: when two writers changed a file at once, the agent that lost keeps its version
 * beside the original as `<stem> (conflict <who> <YYYY-MM-DD HHMMSS>).<ext>` (the same rule as
 * `vidsync/agent/share/conflicts.py`). The tree marks them so someone looks at them and merges.
 */
const COPY = /^(.*) \(conflict (.+) (\d{4}-\d{2}-\d{2} \d{6})\)(?: \d+)?(\.[^./ ]*)?$/;

export interface ConflictCopy {
  /** The name of the file it is a copy of. */
  original: string;
  who: string;
  when: string;
}

export function conflictCopy(name: string): ConflictCopy | null {
  const m = COPY.exec(name);
  if (!m) return null;
  const [, stem = '', who = '', when = '', ext = ''] = m;
  return { original: stem + ext, who, when };
}
