"""What a mirror is doing, read from its state database (no server call, works offline).

The join agent writes a heartbeat every second; a heartbeat older than a few seconds, or an agent
lock nobody holds, means no agent is running for the folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from vidsync.agent import lockfile
from vidsync.agent.mirror.state import MirrorState
from vidsync.agent.share.conflicts import kept_here, unresolved
from vidsync.agent.share.state import ShareState

AGENT_LOCK = "agent.lock"
STALE_HEARTBEAT_S = 5.0


def agent_running(state_dir: Path) -> bool:
    """True if a join agent holds the folder's agent lock."""
    return lockfile.is_held(state_dir / AGENT_LOCK)


def mirror_status(root: str | os.PathLike) -> dict:
    """The mirror's status as plain data: settings, connection, progress, edits, failures."""
    state = MirrorState(root)
    try:
        heartbeat = state.get("agent") or {}
        running = agent_running(state.dir)
        age = time.time() - heartbeat.get("updated_at", 0)
        connection = heartbeat.get("connection", "unknown") if running else "agent not running"
        if running and age > STALE_HEARTBEAT_S:
            connection = f"agent not responding (last heartbeat {age:.0f} s ago)"
        pending_files, pending_bytes = state.pending_totals()
        return {
            "kind": "mirror",
            "dir": str(Path(root).resolve()),
            "server": state.get("server"),
            "project_id": state.get("project_id"),
            "project_name": state.get("project_name"),
            "only": state.get("prefixes") or [],
            "agent_pid": heartbeat.get("pid") if running else None,
            "connection": connection,
            "last_seq": state.last_seq,
            "mode": state.get("mode") or "receive-only",
            "queued_uploads": ShareState(Path(root), mirror=state).queued_count(),
            "pending_downloads": pending_files,
            "pending_bytes": pending_bytes,
            "transferring": heartbeat.get("transferring", []) if running else [],
            "local_edits": state.edits(),
            "failures": state.failures(),
            "conflicts": unresolved(state.db),
            "conflicts_kept_here": kept_here(state.dir),
        }
    finally:
        state.close()
