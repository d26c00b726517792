import { useVirtualizer } from '@tanstack/react-virtual';
import { type CSSProperties, type ReactNode, useCallback, useMemo, useRef, useState } from 'react';
import { conflictCopy } from '../lib/conflicts';
import { formatBytes, formatDateTime } from '../lib/format';
import { isPlayable } from '../lib/media';
import {
  type FileNode,
  type FileTreeModel,
  type FolderNode,
  OPEN_ALL_MAX,
  type SequenceNode,
  type TreeNode,
  visibleRows,
} from '../lib/tree';

/** Starts the download of a file or (as a zip) of a folder. */
export type Download = (node: FileNode | FolderNode) => void;
/** Opens a file in the player. */
export type Play = (node: FileNode) => void;
/** Shows a file's versions. */
export type ShowVersions = (node: FileNode) => void;
/** Extra content for a file's row (e.g. its lock): beside the name, and among the actions. */
export interface FileExtras {
  badge?: (node: FileNode) => ReactNode;
  actions?: (node: FileNode) => ReactNode;
}

/** Up to this many rows are all in the page (find-in-page sees them); past it, those in view. */
const ALL_ROWS_MAX = 100;
/** A row's height before it is measured (one line; narrow screens take two). */
const ROW_ESTIMATE_PX = 37;

interface Props {
  model: FileTreeModel;
  /** `model.version` when the parent rendered: a change re-renders the tree. */
  version: number;
  /** Files changed after this seq (the snapshot's) are marked as changed since the page opened. */
  baseSeq: number;
  /** Absent when the page may no longer download (the member was removed). */
  download?: Download;
  play?: Play;
  showVersions?: ShowVersions;
  extras?: FileExtras;
}

/**
 * The project's files, with disclosure buttons for folders and frame sequences (the keyboard
 * reaches each with Tab, Enter/Space toggles it). Only the rows in view are in the page: the
 * visible rows are a flat list (recomputed when the tree changes or something opens) that a
 * virtualizer windows, so 100,000 files cost what a screenful does.
 */
export function FileTree({ model, version, baseSeq, download, play, showVersions, extras }: Props) {
  const [openByDefault] = useState(() => model.fileCount <= OPEN_ALL_MAX);
  // Paths whose state differs from the default (folders), or that are open (sequences).
  const [toggled, setToggled] = useState<ReadonlySet<string>>(() => new Set());
  const toggle = useCallback(
    (node: FolderNode | SequenceNode) => {
      // A large project's folder shows its totals until its listing is fetched, on first open.
      if (node.kind === 'folder') model.open(node);
      setToggled((prev) => {
        const next = new Set(prev);
        if (!next.delete(node.path)) next.add(node.path);
        return next;
      });
    },
    [model],
  );
  const isOpen = useCallback(
    (node: FolderNode | SequenceNode) =>
      node.kind === 'folder' ? openByDefault !== toggled.has(node.path) : toggled.has(node.path),
    [openByDefault, toggled],
  );
  // `version` stands for the model's contents, which change in place.
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const rows = useMemo(() => visibleRows(model.root, isOpen), [model, version, isOpen]);

  const scrollRef = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => ROW_ESTIMATE_PX,
    getItemKey: (i) => rows[i]!.node.path,
    overscan: rows.length <= ALL_ROWS_MAX ? ALL_ROWS_MAX : 12,
  });

  if (rows.length === 0) {
    return <p className="empty">No files yet. Changes from the owner's folder appear here.</p>;
  }
  const fileCount = model.fileCount;
  return (
    <div className="tree" role="group" aria-label={`${fileCount} ${fileCount === 1 ? 'file' : 'files'}`}>
      <div className="tree-head" aria-hidden="true">
        <span>Name</span>
        <span>Size</span>
        <span>Modified</span>
      </div>
      <div className="tree-scroll" ref={scrollRef} tabIndex={-1}>
        <div className="tree-rows" style={{ height: virtualizer.getTotalSize() }}>
          {virtualizer.getVirtualItems().map((item) => {
            const { node, depth } = rows[item.index]!;
            return (
              <div
                key={item.key}
                className="tree-slot"
                data-index={item.index}
                ref={virtualizer.measureElement}
                style={{ transform: `translateY(${item.start}px)` }}
              >
                {node.kind === 'file' ? (
                  <FileRow
                    node={node}
                    depth={depth}
                    changed={node.file.seq > baseSeq}
                    download={download}
                    play={play}
                    showVersions={showVersions}
                    extras={extras}
                  />
                ) : (
                  <GroupRow
                    node={node}
                    depth={depth}
                    expanded={isOpen(node)}
                    changed={node.kind === 'sequence' && node.seq > baseSeq}
                    toggle={toggle}
                    download={download}
                  />
                )}
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}

/** A folder, or a frame sequence: one line with its totals that opens to show what is inside. */
function GroupRow({
  node,
  depth,
  expanded,
  changed,
  toggle,
  download,
}: {
  node: FolderNode | SequenceNode;
  depth: number;
  expanded: boolean;
  changed: boolean;
  toggle: (node: FolderNode | SequenceNode) => void;
  download: Download | undefined;
}) {
  const count = node.fileCount;
  const what =
    node.kind === 'folder'
      ? `folder, ${count} ${count === 1 ? 'file' : 'files'}`
      : `sequence of ${count} frames${node.missing ? `, ${node.missing} missing` : ''}`;
  const classes = `tree-row ${node.kind}${changed ? ' changed' : ''}`;
  const path = node.kind === 'folder' ? node.path : node.path.slice(0, node.path.lastIndexOf('/') + 1) + node.name;
  return (
    <div className={classes} style={{ '--depth': depth } as CSSProperties} data-path={path}>
      <button
        type="button"
        className="tree-name"
        aria-expanded={expanded}
        onClick={() => toggle(node)}
      >
        <span className="twisty" aria-hidden="true">
          {expanded ? '▾' : '▸'}
        </span>
        {node.kind === 'folder' ? `${node.name}/` : node.name}
        <span className="visually-hidden">, {what}</span>
        {expanded && node.kind === 'folder' && !node.loaded && (
          <span className="tree-note">
            {' '}
            {node.loadError ? `cannot load: ${node.loadError}` : 'loading…'}
          </span>
        )}
        {node.kind === 'sequence' && (
          <span className="tree-note" aria-hidden="true">
            {' '}
            {count.toLocaleString()} frames{node.missing ? `, ${node.missing.toLocaleString()} missing` : ''}
          </span>
        )}
      </button>
      <span className="tree-size">{formatBytes(node.size)}</span>
      <Modified mtime={node.mtime} />
      <span className="tree-actions">
        {download && node.kind === 'folder' && (
          <ActionButton label={`Download ${node.path} as zip`} icon="⤓" onClick={() => download(node)} />
        )}
      </span>
    </div>
  );
}

function FileRow({
  node,
  depth,
  changed,
  download,
  play,
  showVersions,
  extras,
}: {
  node: FileNode;
  depth: number;
  changed: boolean;
  download: Download | undefined;
  play: Play | undefined;
  showVersions: ShowVersions | undefined;
  extras: FileExtras | undefined;
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
        <ConflictBadge name={node.name} />
        {extras?.badge?.(node)}
      </span>
      <span className="tree-size">{formatBytes(file.size)}</span>
      <Modified mtime={file.mtime} />
      <span className="tree-actions">
        {play && isPlayable(node.path) && (
          <ActionButton label={`Play ${node.path}`} icon="▶" onClick={() => play(node)} />
        )}
        {download && (
          <ActionButton label={`Download ${node.path}`} icon="⤓" onClick={() => download(node)} />
        )}
        {showVersions && (
          <ActionButton label={`Versions of ${node.path}`} icon="⟲" onClick={() => showVersions(node)} />
        )}
        {extras?.actions?.(node)}
      </span>
    </div>
  );
}

function ConflictBadge({ name }: { name: string }) {
  const copy = conflictCopy(name);
  if (!copy) return null;
  const title = `${copy.who}'s version of ${copy.original}, kept when both changed it at once; merge it and delete this copy`;
  return (
    <span className="conflict-badge" title={title}>
      conflict copy
    </span>
  );
}

function ActionButton({ label, icon, onClick }: { label: string; icon: string; onClick: () => void }) {
  return (
    <button type="button" className="icon-button" aria-label={label} title={label} onClick={onClick}>
      <span aria-hidden="true">{icon}</span>
    </button>
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

export type { TreeNode };
