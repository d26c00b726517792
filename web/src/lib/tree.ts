// The project's files as a tree that is built once from the snapshot (`GET /files`) and then
// changed in place by each event, so a 100,000-file project costs one build, and an event costs
// the depth of its path. A folder's children are sorted (and its frame sequences grouped) only
// when the folder is shown, and again only after something inside it changed.
import type { FileEntry, ProjectEvent } from './api';
import { type FrameName, MIN_FRAMES, parseFrameName, sequenceLabel } from './sequences';

export interface FileNode {
  kind: 'file';
  name: string;
  /** Full path in the project, e.g. `clips/a.mp4`: what a download link will need. */
  path: string;
  file: FileEntry;
}

/** Many frames of one image sequence, shown as one expandable line. */
export interface SequenceNode {
  kind: 'sequence';
  /** `sh010_comp.[0000001-0014400].exr` */
  name: string;
  /** The name with its folder: unique in the project, stable while frames come and go. */
  path: string;
  /** Frame order. */
  frames: FileNode[];
  /** Frames between the first and the last that are not there. */
  missing: number;
  size: number;
  fileCount: number;
  mtime: number | null;
  /** Highest seq among its frames (the row shows whether any changed since the page opened). */
  seq: number;
}

const collator = new Intl.Collator(undefined, { numeric: true });
const byName = (a: { name: string }, b: { name: string }) => collator.compare(a.name, b.name);

export class FolderNode {
  readonly kind = 'folder';
  /** Totals over everything inside, shown on the folder's row. */
  size = 0;
  fileCount = 0;
  readonly folders = new Map<string, FolderNode>();
  /** Files directly in this folder, by name. */
  readonly files = new Map<string, FileEntry>();
  private sorted: TreeNode[] | null = null;
  private latest: number | null = null;
  private latestStale = false;

  constructor(
    readonly name: string,
    /** Full path with a trailing slash (`clips/`), `''` for the root. */
    readonly path: string,
    readonly parent: FolderNode | null,
  ) {}

  /** Latest mtime inside (ms), null if no file inside has one. Recounted after a removal. */
  get mtime(): number | null {
    if (this.latestStale) {
      let latest: number | null = null;
      for (const f of this.files.values()) if (f.mtime !== null) latest = Math.max(latest ?? 0, f.mtime);
      for (const d of this.folders.values()) {
        const m = d.mtime;
        if (m !== null) latest = Math.max(latest ?? 0, m);
      }
      this.latest = latest;
      this.latestStale = false;
    }
    return this.latest;
  }

  /** Folders first, then files and sequences, each by name (numbers in names compare as numbers). */
  children(): readonly TreeNode[] {
    if (this.sorted === null) {
      const folders = [...this.folders.values()].sort(byName);
      const files = groupFiles(this.path, [...this.files.values()]).sort(byName);
      this.sorted = [...folders, ...files];
    }
    return this.sorted;
  }

  /** Something directly inside changed: re-sort on next show. */
  touch(): void {
    this.sorted = null;
  }

  /** A file was added or removed below: totals up to the root. */
  account(sizeDelta: number, countDelta: number, mtime: number | null, removedMtime: number | null): void {
    for (let f: FolderNode | null = this; f; f = f.parent) {
      f.size += sizeDelta;
      f.fileCount += countDelta;
      if (removedMtime !== null && removedMtime === f.latest) f.latestStale = true;
      if (mtime !== null && !f.latestStale) f.latest = Math.max(f.latest ?? 0, mtime);
    }
  }
}

export type TreeNode = FileNode | SequenceNode | FolderNode;

function groupFiles(folderPath: string, files: FileEntry[]): (FileNode | SequenceNode)[] {
  const out: (FileNode | SequenceNode)[] = [];
  const groups = new Map<string, { name: FrameName; file: FileEntry }[]>();
  for (const file of files) {
    const name = file.path.slice(folderPath.length);
    const frame = parseFrameName(name);
    if (frame === null) {
      out.push({ kind: 'file', name, path: file.path, file });
      continue;
    }
    let group = groups.get(frame.key);
    if (!group) groups.set(frame.key, (group = []));
    group.push({ name: frame, file });
  }
  for (const group of groups.values()) {
    if (group.length < MIN_FRAMES) {
      for (const { file } of group)
        out.push({ kind: 'file', name: file.path.slice(folderPath.length), path: file.path, file });
      continue;
    }
    group.sort((a, b) => a.name.frame - b.name.frame);
    const first = group[0]!.name;
    const last = group[group.length - 1]!.name;
    const seq: SequenceNode = {
      kind: 'sequence',
      name: sequenceLabel(first, last),
      path: folderPath + first.key,
      frames: [],
      missing: last.frame - first.frame + 1 - new Set(group.map((g) => g.name.frame)).size,
      size: 0,
      fileCount: group.length,
      mtime: null,
      seq: 0,
    };
    for (const { file } of group) {
      seq.frames.push({ kind: 'file', name: file.path.slice(folderPath.length), path: file.path, file });
      seq.size += file.size;
      seq.seq = Math.max(seq.seq, file.seq);
      if (file.mtime !== null) seq.mtime = Math.max(seq.mtime ?? 0, file.mtime);
    }
    out.push(seq);
  }
  return out;
}

/** The live tree of one project: `apply` each batch of events, then read `root`. */
export class FileTreeModel {
  readonly root = new FolderNode('', '', null);
  private readonly folders = new Map<string, FolderNode>([['', this.root]]);
  /** Bumped by every change, for React to notice. */
  version = 0;

  constructor(files: Iterable<FileEntry> = []) {
    for (const file of files) this.put(file);
  }

  get fileCount(): number {
    return this.root.fileCount;
  }

  get(path: string): FileEntry | undefined {
    const cut = path.lastIndexOf('/') + 1;
    return this.folders.get(path.slice(0, cut))?.files.get(path.slice(cut));
  }

  apply(events: readonly ProjectEvent[]): void {
    for (const { seq, change } of events) {
      if (change.op === 'delete') this.remove(change.path);
      else
        this.put({
          path: change.path,
          hash: change.hash ?? '',
          size: change.size ?? 0,
          mtime: change.mtime,
          seq,
        });
    }
    this.version += 1;
  }

  private put(file: FileEntry): void {
    const cut = file.path.lastIndexOf('/') + 1;
    const name = file.path.slice(cut);
    const folder = this.folderFor(file.path.slice(0, cut));
    const old = folder.files.get(name);
    folder.files.set(name, file);
    folder.touch();
    folder.account(file.size - (old?.size ?? 0), old ? 0 : 1, file.mtime, old?.mtime ?? null);
  }

  private remove(path: string): void {
    const cut = path.lastIndexOf('/') + 1;
    let folder = this.folders.get(path.slice(0, cut));
    const old = folder?.files.get(path.slice(cut));
    if (!folder || !old) return;
    folder.files.delete(path.slice(cut));
    folder.touch();
    folder.account(-old.size, -1, null, old.mtime);
    // Folders exist only for the files in them: drop the ones this emptied.
    while (folder.parent && folder.fileCount === 0) {
      folder.parent.folders.delete(folder.name);
      folder.parent.touch();
      this.folders.delete(folder.path);
      folder = folder.parent;
    }
  }

  private folderFor(path: string): FolderNode {
    let folder = this.folders.get(path);
    if (folder) return folder;
    const cut = path.lastIndexOf('/', path.length - 2) + 1;
    const parent = this.folderFor(path.slice(0, cut));
    folder = new FolderNode(path.slice(cut, -1), path, parent);
    parent.folders.set(folder.name, folder);
    parent.touch();
    this.folders.set(path, folder);
    return folder;
  }
}

export interface Row {
  node: TreeNode;
  depth: number;
}

/** The rows on screen in order: the root's children, and inside every open folder or sequence. */
export function visibleRows(root: FolderNode, isOpen: (node: FolderNode | SequenceNode) => boolean): Row[] {
  const rows: Row[] = [];
  const walk = (folder: FolderNode, depth: number) => {
    for (const node of folder.children()) {
      rows.push({ node, depth });
      if (node.kind === 'folder' && isOpen(node)) walk(node, depth + 1);
      else if (node.kind === 'sequence' && isOpen(node))
        for (const frame of node.frames) rows.push({ node: frame, depth: depth + 1 });
    }
  };
  walk(root, 0);
  return rows;
}
