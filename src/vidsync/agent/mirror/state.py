"""The receiving side's view of the folder's database (``agent/db.py``): what the server has, what
is on disk.

Two tables carry the sync. ``remote`` is the project as of ``last_seq``: one row per path, a null
hash for a deleted file (kept until the local copy is gone). ``local`` is the synced version of
each path (what this agent last wrote there, or what the server recorded from this folder), with
the file's stat so a later change by someone else shows. A path is
pending while the two differ; ``dirty`` lists exactly those paths, so finding what is pending costs
what is pending, not the size of the mirror. Recording an event and moving ``last_seq`` happen in
one transaction, and applying compares hashes, so an event seen twice, or a restart at any point,
costs nothing but a comparison: the agent resumes from ``last_seq`` and finishes what is pending.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vidsync.agent.db import DIRTY_ORD, Transaction, connect
from vidsync.changes import RESERVED_DIR

DB_NAME = "mirror.db"
# A failing file is retried after 2, 4, 8 ... seconds, at most this long apart.
MAX_RETRY_S = 300.0
# Keys per ``IN (...)`` query (SQLite allows 999 variables in builds before 3.32).
MAX_VARIABLES = 500


@dataclass(frozen=True, slots=True)
class RemoteFile:
    path: str
    hash: str | None  # None: the owner deleted it
    size: int | None
    mtime: int | None  # milliseconds, as the owner's agent sent it
    seq: int


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: str
    hash: str
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int | None = None  # None in rows written before it was recorded

    def matches(self, st: os.stat_result) -> bool:
        """The file on disk is still the one this agent wrote (same inode, size and mtime)."""
        return (st.st_ino, st.st_size, st.st_mtime_ns) == (self.ino, self.size, self.mtime_ns)

    def unchanged(self, st: os.stat_result) -> bool:
        """Also the same ctime: nothing wrote to the file since it was verified, not even with
        its mtime put back. Only then are its blocks taken without hashing them (as Syncthing)."""
        return self.ctime_ns is not None and self.matches(st) and st.st_ctime_ns == self.ctime_ns


def state_dir(root: str | os.PathLike) -> Path:
    return Path(root) / RESERVED_DIR


def is_mirror(root: str | os.PathLike) -> bool:
    return (state_dir(root) / DB_NAME).is_file()


class MirrorState:
    """One connection to a mirror's database. Each method is one short transaction."""

    def __init__(self, root: str | os.PathLike, db_name: str = DB_NAME) -> None:
        self.dir = state_dir(root)
        self.db = connect(self.dir / db_name)
        # Called inside the transaction that changes a path's synced version (``local``): the
        # sending side keeps its index in step, so a file written here is never sent back.
        self.on_synced: Callable[[str, LocalFile | None], None] | None = None

    def close(self) -> None:
        self.db.close()

    def _tx(self) -> Transaction:
        """``with state._tx():`` runs the block in one IMMEDIATE transaction."""
        return Transaction(self.db)

    # -- settings and progress ----------------------------------------------------------------

    def get(self, key: str, default: object = None) -> object:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put(self, **values: object) -> None:
        with self._tx():
            self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in values.items()])

    @property
    def last_seq(self) -> int:
        return int(self.get("last_seq", 0))  # type: ignore[arg-type]

    # -- the owner's side -----------------------------------------------------------------------

    def record_events(self, events: Iterable[dict]) -> list[RemoteFile]:
        """Take events (``{seq, change}``) into ``remote`` and move ``last_seq``, atomically.
        Events at or below ``last_seq`` are ignored. Returns the rows that changed."""
        changed = []
        with self._tx():
            last = self.last_seq
            for event in events:
                seq, ch = event["seq"], event["change"]
                if seq <= last:
                    continue
                row = RemoteFile(ch["path"], ch.get("hash") if ch["op"] != "delete" else None,
                                 ch.get("size"), ch.get("mtime"), seq)
                known = self.db.execute("SELECT seq FROM remote WHERE path = ?",
                                        (row.path,)).fetchone()
                if known is not None and known[0] >= seq:
                    # Our own post of this event (same seq: the same change) or a later one is
                    # already recorded for this path: nothing to write or re-evaluate.
                    last = seq
                    continue
                self._put_remote(row)
                self.db.execute("DELETE FROM failures WHERE path = ?", (row.path,))
                self._reevaluate(row.path)
                changed.append(row)
                last = seq
            self._put_meta("last_seq", last)
        return changed

    def advance_seq(self, seq: int) -> None:
        """The log moved on with nothing for this mirror (outside its ``--only`` prefixes)."""
        with self._tx():
            if seq > self.last_seq:
                self._put_meta("last_seq", seq)

    def apply_snapshot(self, files: list[dict], seq: int) -> None:
        """Replace the owner's side with a snapshot taken at ``seq``: every path the snapshot
        does not name becomes a deletion."""
        with self._tx():
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS snap (path TEXT PRIMARY KEY)")
            self.db.execute("DELETE FROM snap")
            self.db.execute("DELETE FROM failures")
            for f in files:
                self._put_remote(RemoteFile(f["path"], f["hash"], f["size"], f.get("mtime"),
                                            f.get("seq") or seq))
                self.db.execute("INSERT OR IGNORE INTO snap VALUES (?)", (f["path"],))
            self.db.execute(
                "UPDATE remote SET hash = NULL, size = NULL, mtime = NULL, seq = ? "
                "WHERE hash IS NOT NULL AND path NOT IN (SELECT path FROM snap)", (seq,))
            self.db.execute(
                "INSERT OR IGNORE INTO remote (path, seq) SELECT path, ? FROM local "
                "WHERE path NOT IN (SELECT path FROM snap)", (seq,))
            self.db.execute("DELETE FROM dirty")
            self.db.execute(f"INSERT INTO dirty SELECT r.path, {DIRTY_ORD}" + self._DIFFERS)
            self._put_meta("last_seq", seq)

    def _put_remote(self, row: RemoteFile) -> None:
        self.db.execute("INSERT OR REPLACE INTO remote (path, hash, size, mtime, seq) "
                        "VALUES (?, ?, ?, ?, ?)", (row.path, row.hash, row.size, row.mtime, row.seq))

    def _put_meta(self, key: str, value: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (key, json.dumps(value)))

    def remote(self, path: str) -> RemoteFile | None:
        row = self.db.execute("SELECT path, hash, size, mtime, seq FROM remote WHERE path = ?",
                              (path,)).fetchone()
        return RemoteFile(*row) if row else None

    def remotes(self, paths: list[str]) -> dict[str, RemoteFile]:
        """``remote`` for many paths at once (those the owner's side has a row for)."""
        return {r[0]: RemoteFile(*r) for r in self._where_in(
            "SELECT path, hash, size, mtime, seq FROM remote WHERE path IN", paths)}

    def _where_in(self, query: str, keys: list[str]) -> Iterator[tuple]:
        """``query (?, ?, ...)`` over ``keys``, a few hundred at a time."""
        for i in range(0, len(keys), MAX_VARIABLES):
            chunk = keys[i:i + MAX_VARIABLES]
            yield from self.db.execute(f"{query} ({', '.join('?' * len(chunk))})", chunk)

    # -- what differs ---------------------------------------------------------------------------

    _DIFFERS = """
        FROM remote r LEFT JOIN local l ON l.path = r.path
        WHERE ((r.hash IS NULL AND l.path IS NOT NULL)
               OR (r.hash IS NOT NULL AND (l.path IS NULL OR l.hash != r.hash)))"""
    # CROSS JOIN: SQLite keeps the table order, so it walks the dirty paths (in order, by their
    # index, stopping at the LIMIT), not ``remote``.
    _PENDING = """
        FROM dirty d INDEXED BY dirty_ord CROSS JOIN remote r ON r.path = d.path
        LEFT JOIN local l ON l.path = r.path
        WHERE ((r.hash IS NULL AND l.path IS NOT NULL)
               OR (r.hash IS NOT NULL AND (l.path IS NULL OR l.hash != r.hash)))
          AND r.path NOT IN (SELECT path FROM edits)"""

    def _reevaluate(self, path: str) -> None:
        """Keep ``dirty`` exact for one path after its remote or local row changed."""
        row = self.db.execute(f"SELECT {DIRTY_ORD}" + self._DIFFERS + " AND r.path = ?",
                              (path,)).fetchone()
        if row is not None:
            self.db.execute("INSERT OR REPLACE INTO dirty (path, ord) VALUES (?, ?)", (path, row[0]))
        else:
            self.db.execute("DELETE FROM dirty WHERE path = ?", (path,))

    def pending(self, limit: int = 1000) -> list[RemoteFile]:
        """Paths whose disk copy differs from the owner's: deletions first (they only remove what
        the owner's folder no longer has, and may free a name a later file needs, as when a file
        becomes a folder), then oldest change first. Local edits and files waiting out a retry
        delay are left out."""
        rows = self.db.execute(
            "SELECT r.path, r.hash, r.size, r.mtime, r.seq " + self._PENDING +
            " AND r.path NOT IN (SELECT path FROM failures WHERE retry_at > ?)"
            " ORDER BY d.ord LIMIT ?", (time.time(), limit)).fetchall()
        return [RemoteFile(*r) for r in rows]

    def pending_totals(self) -> tuple[int, int]:
        """(files, bytes) still to download or delete, local edits and refusals aside."""
        n, size = self.db.execute(
            "SELECT count(*), coalesce(sum(r.size), 0) " + self._PENDING +
            " AND r.path NOT IN (SELECT path FROM failures WHERE retry_at = ?)",
            (float("inf"),)).fetchone()
        return n, size

    def next_retry_at(self) -> float | None:
        row = self.db.execute("SELECT min(retry_at) FROM failures").fetchone()
        return row[0]

    # -- this machine's side --------------------------------------------------------------------

    def local(self, path: str) -> LocalFile | None:
        row = self.db.execute("SELECT path, hash, size, mtime_ns, ino, ctime_ns FROM local "
                              "WHERE path = ?",
                              (path,)).fetchone()
        return LocalFile(*row) if row else None

    def locals_of(self, paths: list[str]) -> dict[str, LocalFile]:
        """``local`` for many paths at once (those this side has a synced version of)."""
        return {r[0]: LocalFile(*r) for r in self._where_in(
            "SELECT path, hash, size, mtime_ns, ino, ctime_ns FROM local WHERE path IN", paths)}

    def locals_folding_to(self, folds: list[str]) -> dict[str, list[str]]:
        """The synced paths stored under each of ``folds`` (case-folded keys)."""
        found: dict[str, list[str]] = {}
        for path, fold in self._where_in("SELECT path, fold FROM local WHERE fold IN", folds):
            found.setdefault(fold, []).append(path)
        return found

    def local_paths_under(self, folder: str) -> list[str]:
        """Paths the agent wrote inside ``folder`` (``a/b`` for ``a/b/...``)."""
        lo = folder + "/"
        hi = folder + "0"  # '0' is the character after '/': the range holds exactly folder/...
        return [r[0] for r in self.db.execute(
            "SELECT path FROM local WHERE path >= ? AND path < ?", (lo, hi))]

    def all_local(self) -> dict[str, LocalFile]:
        rows = self.db.execute("SELECT path, hash, size, mtime_ns, ino, ctime_ns FROM local")
        return {r[0]: LocalFile(*r) for r in rows}

    def set_local(self, row: LocalFile, fold: str) -> None:
        """This agent wrote ``row`` (or found the server's content already there)."""
        self.set_locals([(row, fold)])

    def set_locals(self, rows: list[tuple[LocalFile, str]]) -> None:
        """``set_local`` for each ``(row, fold)``, in one transaction."""
        if not rows:
            return
        with self._tx():
            for row, fold in rows:
                self._set_local(row, fold)
                if self.on_synced is not None:
                    self.on_synced(row.path, row)

    def _set_local(self, row: LocalFile, fold: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO local (path, fold, hash, size, mtime_ns, ino, ctime_ns) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.path, fold, row.hash, row.size, row.mtime_ns, row.ino, row.ctime_ns))
        self._settled(row.path)

    def drop_local(self, path: str) -> None:
        """The file is gone from disk (deleted by this agent, or moved aside by revert)."""
        self.drop_locals([path])

    def drop_locals(self, paths: list[str]) -> None:
        """``drop_local`` for many files, in one transaction."""
        with self._tx():
            for path in paths:
                self.db.execute("DELETE FROM local WHERE path = ?", (path,))
                self._settled(path)
                if self.on_synced is not None:
                    self.on_synced(path, None)

    def posted(self, row: RemoteFile, synced: LocalFile | None, fold: str) -> None:
        """The server recorded this folder's change ``row`` (at ``row.seq``): the server's side
        and the synced version both become it, and the path is no longer a local change. The log
        brings the same event back later; it then changes nothing."""
        with self._tx():
            known = self.remote(row.path)
            if known is None or known.seq <= row.seq:
                self._put_remote(row)
            if synced is None:  # the deletion's row stays: it outranks older events for the path
                self.db.execute("DELETE FROM local WHERE path = ?", (row.path,))
                self.db.execute("DELETE FROM failures WHERE path = ?", (row.path,))
            else:
                self._set_local(synced, fold)
            self.db.execute("DELETE FROM edits WHERE path = ?", (row.path,))
            self._reevaluate(row.path)

    def learn(self, row: RemoteFile) -> None:
        """The server told us its current version of a path (in a conflict answer): take it now
        unless the log already brought something newer; its event comes later and agrees."""
        with self._tx():
            known = self.remote(row.path)
            if known is None or known.seq < row.seq:
                self._put_remote(row)
                self._reevaluate(row.path)

    def unsync(self, path: str) -> None:
        """Forget the synced version of ``path`` (its local copy was set aside as a conflict
        copy, or its delete lost to a modification): the server's version is applied there."""
        with self._tx():
            self.db.execute("DELETE FROM local WHERE path = ?", (path,))
            self.db.execute("DELETE FROM edits WHERE path = ?", (path,))
            self._settled(path)

    def _settled(self, path: str) -> None:
        self.db.execute("DELETE FROM failures WHERE path = ?", (path,))
        self.db.execute("DELETE FROM remote WHERE path = ? AND hash IS NULL AND path NOT IN "
                        "(SELECT path FROM local)", (path,))
        self._reevaluate(path)

    # -- local edits and failures ---------------------------------------------------------------

    def set_edit(self, path: str, kind: str) -> bool:
        """Record a local edit; True if it is new (so it is reported once)."""
        with self._tx():
            row = self.db.execute("SELECT kind FROM edits WHERE path = ?", (path,)).fetchone()
            if row is not None and row[0] == kind:
                return False
            self.db.execute("INSERT OR REPLACE INTO edits (path, kind, detected_at) VALUES (?, ?, ?)",
                            (path, kind, time.time()))
            return True

    def clear_edit(self, path: str) -> bool:
        """Forget a local edit; True if there was one."""
        if self.db.execute("SELECT 1 FROM edits WHERE path = ?", (path,)).fetchone() is None:
            return False  # the common case, read-only: a scan of a big mirror writes nothing
        with self._tx():
            return self.db.execute("DELETE FROM edits WHERE path = ?", (path,)).rowcount > 0

    def edited(self, paths: list[str]) -> set[str]:
        """Which of ``paths`` are recorded as local edits."""
        return {r[0] for r in self._where_in("SELECT path FROM edits WHERE path IN", paths)}

    def edits(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT path, kind FROM edits ORDER BY path"))

    def fail(self, path: str, digest: str | None, error: str, permanent: bool = False) -> int:
        """Note a failed apply and when to try again (a permanent failure: only once the owner
        changes the file again); returns the number of attempts so far."""
        with self._tx():
            row = self.db.execute("SELECT attempts, hash FROM failures WHERE path = ?",
                                  (path,)).fetchone()
            attempts = (row[0] if row and row[1] == digest else 0) + 1
            delay = float("inf") if permanent else min(MAX_RETRY_S, 2.0 ** attempts)
            self.db.execute("INSERT OR REPLACE INTO failures (path, hash, error, attempts, retry_at) "
                            "VALUES (?, ?, ?, ?, ?)", (path, digest, error, attempts,
                                                       time.time() + delay))
            return attempts

    def retry_now(self) -> None:
        """Let every failing file be tried again at once (refusals stay refused)."""
        with self._tx():
            self.db.execute("UPDATE failures SET retry_at = 0 WHERE retry_at != ?", (float("inf"),))

    def failures(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT path, error FROM failures ORDER BY path"))
