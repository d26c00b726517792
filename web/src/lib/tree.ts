import type { FileEntry } from './api';

export interface FileNode {
  kind: 'file';
  name: string;
  /** Full path in the project, e.g. `clips/a.mp4`: what a download link will need. */
  path: string;
  file: FileEntry;
}

export interface FolderNode {
  kind: 'folder';
  name: string;
  /** Full path with a trailing slash (`clips/`), `''` for the root. */
  path: string;
  children: TreeNode[];
  /** Totals over everything inside, shown on the folder's row. */
  size: number;
  fileCount: number;
  /** Latest mtime inside (ms), null if no file inside has one. */
  mtime: number | null;
}

export type TreeNode = FileNode | FolderNode;

function folder(name: string, path: string): FolderNode {
  return { kind: 'folder', name, path, children: [], size: 0, fileCount: 0, mtime: null };
}

/** Turns the flat snapshot (`GET /files`) into folders, sorted folders first, then by name. */
export function buildTree(files: Iterable<FileEntry>): FolderNode {
  const root = folder('', '');
  const folders = new Map<string, FolderNode>([['', root]]);
  for (const file of files) {
    const parts = file.path.split('/');
    const name = parts.pop()!;
    let parent = root;
    let prefix = '';
    const chain = [root];
    for (const part of parts) {
      prefix += `${part}/`;
      let next = folders.get(prefix);
      if (!next) {
        next = folder(part, prefix);
        folders.set(prefix, next);
        parent.children.push(next);
      }
      parent = next;
      chain.push(next);
    }
    parent.children.push({ kind: 'file', name, path: file.path, file });
    for (const f of chain) {
      f.size += file.size;
      f.fileCount += 1;
      if (file.mtime !== null) f.mtime = Math.max(f.mtime ?? 0, file.mtime);
    }
  }
  for (const f of folders.values()) {
    f.children.sort(
      (a, b) => (a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === 'folder' ? -1 : 1),
    );
  }
  return root;
}
