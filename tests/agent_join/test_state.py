"""The mirror's state database: which paths are pending, and in what order they are applied."""

from __future__ import annotations

import sqlite3

from vidsync.agent.db import SCHEMA
from vidsync.agent.mirror.state import LocalFile, MirrorState


def change(seq: int, path: str, digest: str | None) -> dict:
    op = "delete" if digest is None else "create"
    return {"seq": seq, "change": {"path": path, "op": op, "hash": digest, "size": 1, "mtime": 0}}


def test_pending_paths_come_deletions_first_then_oldest_change_first(tmp_path):
    state = MirrorState(tmp_path)
    try:
        state.record_events([change(1, "a", "1" * 64), change(2, "b", "2" * 64),
                             change(3, "c", "3" * 64), change(4, "gone", "4" * 64)])
        state.set_local(LocalFile("gone", "4" * 64, 1, 0, 1), "gone")
        assert [r.path for r in state.pending()] == ["a", "b", "c"]
        # A newer change to "a" puts it last; deleting what is here puts "gone" first.
        state.record_events([change(5, "a", "5" * 64), change(6, "gone", None)])
        assert [r.path for r in state.pending()] == ["gone", "b", "c", "a"]
        assert [r.path for r in state.pending(limit=2)] == ["gone", "b"]
        state.set_local(LocalFile("b", "2" * 64, 1, 0, 2), "b")
        assert [r.path for r in state.pending()] == ["gone", "c", "a"]
    finally:
        state.close()


def test_a_database_from_before_pending_paths_kept_their_order_is_upgraded(tmp_path):
    (tmp_path / ".vidsync").mkdir()
    old = sqlite3.connect(tmp_path / ".vidsync" / "mirror.db")
    old.executescript(SCHEMA.replace("dirty (path TEXT PRIMARY KEY, ord INTEGER NOT NULL DEFAULT 0)",
                                     "dirty (path TEXT PRIMARY KEY)"))
    old.executemany("INSERT INTO remote VALUES (?, ?, 1, 0, ?)",
                    [("new", "1" * 64, 9), ("old", "2" * 64, 3), ("deleted", None, 7)])
    old.execute("INSERT INTO local VALUES ('deleted', 'deleted', ?, 1, 0, 1, NULL)", ("3" * 64,))
    old.executemany("INSERT INTO dirty VALUES (?)", [("new",), ("old",), ("deleted",)])
    old.commit()
    old.close()
    state = MirrorState(tmp_path)
    try:
        assert [r.path for r in state.pending()] == ["deleted", "old", "new"]
    finally:
        state.close()
