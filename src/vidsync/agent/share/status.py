"""``share_status(dir)``: what the owner agent of a folder is doing, read from its state alone.

It never calls the server: ``server_reachable`` is what the running agent last saw (None when no
agent runs), so ``vidsync status`` stays instant and works offline.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from vidsync.agent import lockfile
from vidsync.agent.share.agent import LOCK_FILE
from vidsync.agent.share.conflicts import kept_here, unresolved
from vidsync.agent.share.state import DB_NAME, ShareState, state_dir


def agent_running(root: Path) -> bool:
    """True while a ``vidsync share`` holds the folder's lock."""
    return lockfile.is_held(state_dir(root) / LOCK_FILE)


def share_status(root: str | os.PathLike) -> dict | None:
    """The folder's sharing state, or None if it was never shared:

    ``{project_id, project_name, server, agent_running, server_reachable, last_error,
    last_posted_seq, queued_changes, outbox_batches, uploads: [{path, sent, size}],
    bytes_uploaded, files_uploaded, changes_posted, indexed_files, last_seq, mode, conflicts,
    conflicts_kept_here, bytes_hash_resumed}``

    ``bytes_hash_resumed``: bytes of edited big files whose whole-file SHA-256 resumed from a
    state saved with the version before, instead of being read and hashed again.
    """
    root = Path(root).resolve()
    if not (state_dir(root) / DB_NAME).exists():
        return None
    try:
        state = ShareState(root, readonly=True)
    except sqlite3.OperationalError:
        return None
    try:
        return _read(root, state)
    except sqlite3.OperationalError:  # the agent is creating the database right now
        return None
    finally:
        state.close()


def _read(root: Path, state: ShareState) -> dict:
    running = agent_running(root)
    return {
        "project_id": state.get("project_id"),
        "project_name": state.get("project_name"),
        "server": state.get("server"),
        "agent_running": running,
        "server_reachable": state.get("server_reachable") if running else None,
        "last_error": state.get("last_error"),
        "last_posted_seq": state.get("last_posted_seq"),
        "queued_changes": state.queued_count(),
        "outbox_batches": len(state.outbox()),
        "uploads": state.get("uploads", []) if running else [],
        "bytes_uploaded": int(state.get("bytes_uploaded", 0)),
        "files_uploaded": int(state.get("files_uploaded", 0)),
        "changes_posted": int(state.get("changes_posted", 0)),
        "indexed_files": len(state.local_paths()),
        "last_seq": state.get("last_seq"),
        "mode": state.get("mode") or "two-way",
        "conflicts": unresolved(state.db),
        "conflicts_kept_here": kept_here(state_dir(root)),
        "bytes_hash_resumed": int(state.get("bytes_hash_resumed", 0)),
    }
