// The project's files as a tree that is built from the server's listings and then changed in
// place by each event, so an event costs the depth of its path. A small project loads whole
// (`GET /files`); a large one a folder at a time (`GET /files?dir=`): the root first, then each
// folder when it is opened, a folder not yet loaded showing only its totals. A folder's children
// are sorted (and its frame sequences grouped) only when the folder is shown, and again only after
// something inside it changed.
//
// Each loaded folder remembers the seq of its listing. An event is applied only if it is newer
// than every loaded folder on its path (older ones are already in those listings), and one that
// falls inside a folder not yet loaded waits for that folder's listing, which it asks for: the
// totals above stay exact, and nothing is missed or counted twice.
import type { FileEntry, FolderListing, ProjectEvent } from './api';
import { type FrameName, MIN_FRAMES, parseFrameName, sequenceLabel } from './sequences';

export interface FileNode {
  kind: 'file';
  name: string;
  /** Full path in the project, e.g. `clips/a.mp4`: what a download link will need. */
  path: string;
  file: FileEntry;
}

/** Projects up to this many files load whole and open with every folder open. */
export const OPEN_ALL_MAX = 2_000;

/** Fetches one folder's listing (`''` the root, else `dir/`). */
export type LoadFolder = (path: string) => Promise<FolderListing>;

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
  /** The seq of the listing its contents come from; null while only its totals are known. */
  loadedAt: number | null;
  /** Its listing is being fetched, or could not be (the message). */
  loading = false;
  loadError: string | null = null;
  private sorted: TreeNode[] | null = null;
  private latest: number | null = null;
  private latestStale = false;

  constructor(
    readonly name: string,
    /** Full path with a trailing slash (`clips/`), `''` for the root. */
    readonly path: string,
    readonly parent: FolderNode | null,
    loadedAt: number | null,
  ) {
    this.loadedAt = loadedAt;
  }

  get loaded(): boolean {
    return this.loadedAt !== null;
  }

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

  /** Totals from a listing, for a folder whose contents are not loaded. */
  setTotals(size: number, fileCount: number, mtime: number | null): void {
    this.size = size;
    this.fileCount = fileCount;
    this.latest = mtime;
    this.latestStale = false;
  }

  /** Its contents changed wholesale (a listing arrived): recount the latest mtime when asked. */
  recount(): void {
    this.latestStale = true;
    this.sorted = null;
  }

  /** The latest mtime as last counted, without recounting (what the ancestors compared to). */
  get countedMtime(): number | null {
    return this.latest;
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
  readonly root: FolderNode;
  private readonly folders = new Map<string, FolderNode>();
  /** Events inside a folder whose listing is on its way, in order. */
  private readonly waiting = new Map<FolderNode, ProjectEvent[]>();
  /** Bumped by every change, for React to notice. */
  version = 0;
  /** Called after a folder's listing arrived (or failed) outside `apply`. */
  onChange: (() => void) | null = null;

  /** The whole project, from `GET /files` as of `seq`. */
  static whole(files: Iterable<FileEntry>, seq: number): FileTreeModel {
    const model = new FileTreeModel(null);
    model.root.loadedAt = seq;
    for (const file of files) model.put(file);
    return model;
  }

  /** The root's listing; `load` fetches the rest as folders open, or change inside. */
  static byFolder(root: FolderListing, load: LoadFolder): FileTreeModel {
    const model = new FileTreeModel(load);
    model.fill(model.root, root);
    return model;
  }

  private constructor(private readonly load: LoadFolder | null) {
    this.root = new FolderNode('', '', null, null);
    this.folders.set('', this.root);
  }

  get fileCount(): number {
    return this.root.fileCount;
  }

  get(path: string): FileEntry | undefined {
    const cut = path.lastIndexOf('/') + 1;
    return this.folders.get(path.slice(0, cut))?.files.get(path.slice(cut));
  }

  apply(events: readonly ProjectEvent[]): void {
    for (const event of events) this.applyOne(event);
    this.version += 1;
  }

  /** Fetches a folder's contents (once; again after a failure). */
  open(folder: FolderNode): void {
    if (folder.loaded || folder.loading || !this.load) return;
    folder.loading = true;
    folder.loadError = null;
    this.load(folder.path).then(
      (listing) => {
        folder.loading = false;
        if (this.folders.get(folder.path) !== folder) return; // removed meanwhile
        this.fill(folder, listing);
        const waiting = this.waiting.get(folder) ?? [];
        this.waiting.delete(folder);
        for (const event of waiting) this.applyOne(event);
        // Emptied since its parent's listing: kept until the waiting events were checked
        // against its seq, then dropped like any empty folder.
        this.prune(folder);
        this.changed();
      },
      (err: unknown) => {
        folder.loading = false;
        folder.loadError = err instanceof Error ? err.message : String(err);
        this.changed();
      },
    );
  }

  private changed(): void {
    this.version += 1;
    this.onChange?.();
  }

  private applyOne(event: ProjectEvent): void {
    const { seq, change } = event;
    // Down the loaded folders on the path: stop where the event is already counted, or where
    // the folder's contents are not known yet (it waits there).
    let folder = this.root;
    let start = 0;
    for (;;) {
      if (folder.loadedAt === null) {
        let queue = this.waiting.get(folder);
        if (!queue) this.waiting.set(folder, (queue = []));
        queue.push(event);
        this.open(folder);
        return;
      }
      if (seq <= folder.loadedAt) return;
      const cut = change.path.indexOf('/', start);
      if (cut < 0) break;
      const child = folder.folders.get(change.path.slice(start, cut));
      if (!child) break; // a folder new since the listing: its events are all it holds
      folder = child;
      start = cut + 1;
    }
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

  /** A folder's listing replaces what was known of it (its totals); the ancestors follow. */
  private fill(folder: FolderNode, listing: FolderListing): void {
    const oldSize = folder.size;
    const oldCount = folder.fileCount;
    const oldMtime = folder.countedMtime;
    let size = 0;
    let count = 0;
    for (const entry of listing.folders) {
      const name = entry.path.slice(folder.path.length, -1);
      let child = folder.folders.get(name);
      if (!child) {
        child = new FolderNode(name, entry.path, folder, null);
        folder.folders.set(name, child);
        this.folders.set(entry.path, child);
      }
      child.setTotals(entry.size, entry.file_count, entry.mtime);
      size += entry.size;
      count += entry.file_count;
    }
    for (const file of listing.files) {
      folder.files.set(file.path.slice(folder.path.length), file);
      size += file.size;
      count += 1;
    }
    folder.loadedAt = listing.seq;
    folder.size = size;
    folder.fileCount = count;
    folder.recount();
    const parent = folder.parent;
    if (!parent) return;
    parent.touch();
    parent.account(size - oldSize, count - oldCount, folder.mtime, oldMtime);
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
    const folder = this.folders.get(path.slice(0, cut));
    const old = folder?.files.get(path.slice(cut));
    if (!folder || !old) return;
    folder.files.delete(path.slice(cut));
    folder.touch();
    folder.account(-old.size, -1, null, old.mtime);
    this.prune(folder);
  }

  /** Folders exist only for the files in them: drop the ones that are empty now. */
  private prune(folder: FolderNode): void {
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
    // New since its parent's listing, so complete as of it.
    folder = new FolderNode(path.slice(cut, -1), path, parent, parent.loadedAt);
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
