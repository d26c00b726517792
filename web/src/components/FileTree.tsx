import { type CSSProperties, useCallback, useMemo, useState } from 'react';
import type { FileEntry } from '../lib/api';
import { formatBytes, formatDateTime } from '../lib/format';
import { type FileNode, type FolderNode, type TreeNode, buildTree } from '../lib/tree';

/** Starts the download of a file or (as a zip) of a folder. */
export type Download = (node: TreeNode) => void;

interface Props {
  files: ReadonlyMap<string, FileEntry>;
  /** Files changed after this seq (the snapshot's) are marked as changed since the page opened. */
  baseSeq: number;
  /** Absent when the page may no longer download (the member was removed). */
  download?: Download;
}

/**
 * The project's files as nested lists with disclosure buttons for folders (the keyboard
 * reaches every folder with Tab, Enter/Space toggles it). Each row ends with a download button.
 */
export function FileTree({ files, baseSeq, download }: Props) {
  const root = useMemo(() => buildTree(files.values()), [files]);
  const [collapsed, setCollapsed] = useState<ReadonlySet<string>>(() => new Set());
  const toggle = useCallback((path: string) => {
    setCollapsed((prev) => {
      const next = new Set(prev);
      if (!next.delete(path)) next.add(path);
      return next;
    });
  }, []);

  if (root.children.length === 0) {
    return <p className="empty">No files yet. Changes from the owner's folder appear here.</p>;
  }
  return (
    <div className="tree" role="group" aria-label={`${root.fileCount} files`}>
      <div className="tree-head" aria-hidden="true">
        <span>Name</span>
        <span>Size</span>
        <span>Modified</span>
      </div>
      <Children
        folder={root}
        depth={0}
        collapsed={collapsed}
        toggle={toggle}
        baseSeq={baseSeq}
        download={download}
      />
    </div>
  );
}

interface ChildrenProps {
  folder: FolderNode;
  depth: number;
  collapsed: ReadonlySet<string>;
  toggle: (path: string) => void;
  baseSeq: number;
  download: Download | undefined;
}

function Children({ folder, depth, collapsed, toggle, baseSeq, download }: ChildrenProps) {
  return (
    <ul className="tree-list">
      {folder.children.map((node) =>
        node.kind === 'folder' ? (
          <li key={node.path}>
            <FolderRow
              node={node}
              depth={depth}
              expanded={!collapsed.has(node.path)}
              toggle={toggle}
              download={download}
            />
            {!collapsed.has(node.path) && (
              <Children
                folder={node}
                depth={depth + 1}
                collapsed={collapsed}
                toggle={toggle}
                baseSeq={baseSeq}
                download={download}
              />
            )}
          </li>
        ) : (
          <li key={node.path}>
            <FileRow
              node={node}
              depth={depth}
              changed={node.file.seq > baseSeq}
              download={download}
            />
          </li>
        ),
      )}
    </ul>
  );
}

function FolderRow({
  node,
  depth,
  expanded,
  toggle,
  download,
}: {
  node: FolderNode;
  depth: number;
  expanded: boolean;
  toggle: (path: string) => void;
  download: Download | undefined;
}) {
  return (
    <div className="tree-row folder" style={{ '--depth': depth } as CSSProperties}>
      <button
        type="button"
        className="tree-name"
        aria-expanded={expanded}
        onClick={() => toggle(node.path)}
      >
        <span className="twisty" aria-hidden="true">
          {expanded ? '▾' : '▸'}
        </span>
        {node.name}/
        <span className="visually-hidden">
          , folder, {node.fileCount} {node.fileCount === 1 ? 'file' : 'files'}
        </span>
      </button>
      <span className="tree-size">{formatBytes(node.size)}</span>
      <Modified mtime={node.mtime} />
      <Actions node={node} label={`Download ${node.path} as zip`} download={download} />
    </div>
  );
}

function FileRow({
  node,
  depth,
  changed,
  download,
}: {
  node: FileNode;
  depth: number;
  changed: boolean;
  download: Download | undefined;
}) {
  const { file } = node;
  return (
    // Keyed by seq so the "just changed" highlight animation replays on every update.
    <div
      key={file.seq}
      className={changed ? 'tree-row file changed' : 'tree-row file'}
      style={{ '--depth': depth } as CSSProperties}
      data-path={node.path}
      data-seq={file.seq}
    >
      <span className="tree-name" title={node.path}>
        {node.name}
      </span>
      <span className="tree-size">{formatBytes(file.size)}</span>
      <Modified mtime={file.mtime} />
      <Actions node={node} label={`Download ${node.path}`} download={download} />
    </div>
  );
}

function Actions({
  node,
  label,
  download,
}: {
  node: TreeNode;
  label: string;
  download: Download | undefined;
}) {
  return (
    <span className="tree-actions">
      {download && (
        <button
          type="button"
          className="icon-button"
          aria-label={label}
          title={label}
          onClick={() => download(node)}
        >
          <span aria-hidden="true">⤓</span>
        </button>
      )}
    </span>
  );
}

function Modified({ mtime }: { mtime: number | null }) {
  if (mtime === null) return <span className="tree-mtime">—</span>;
  const date = new Date(mtime);
  return (
    <time className="tree-mtime" dateTime={date.toISOString()}>
      {formatDateTime(date)}
    </time>
  );
}
