"""The owner agent's durable state: ``DIR/.vidsync/share.db`` (SQLite, WAL).

Four tables make the agent crash-proof without a separate change log:

- ``local``: what the folder holds, as last hashed (path, stat, SHA-256, block hashes). A rescan
  hashes only files whose stat differs from it. A deleted file stays as a tombstone (``hash`` NULL)
  until the server has recorded the delete, so deletes keep their place in the order.
- ``remote``: what the server holds, as of our last confirmed post (refreshed from ``/files`` on
  every (re)connect).
- ``outbox``: batches frozen for sending, each with the ``Idempotency-Key`` it is sent with. A
  batch is written here before its first attempt and removed in the same transaction that records
  its result in ``remote``, so a retry after ``kill -9`` reuses the key and nothing is posted twice.
- ``meta``: the project, the last posted seq, byte counters and what the agent is doing now.

The journal of changes the server has not seen is the difference ``local`` minus ``remote``: while
the server is unreachable the watcher keeps updating ``local``, and on reconnect the difference is
one coalesced batch (a file edited ten times offline is sent once, at its latest content), in the
order the changes were seen.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vidsync.changes import RESERVED_DIR
from vidsync.content.blocks import BlockRef, Manifest

DB_NAME = "share.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS local (
    path TEXT PRIMARY KEY,
    fspath TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    ino INTEGER,
    hash TEXT,
    block_size INTEGER,
    blocks BLOB,
    ord INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS local_ino ON local (ino);
CREATE TABLE IF NOT EXISTS remote (
    path TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    changes TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A hashed file of the shared folder. ``fspath`` is its name on disk (relative), which may
    differ from the NFC ``path`` sent to the server (e.g. NFD names on macOS)."""

    path: str
    fspath: str
    size: int
    mtime_ns: int
    ino: int
    hash: str
    block_size: int
    blocks: bytes  # the block hashes, 32 raw bytes each

    @property
    def mtime_ms(self) -> int:
        return self.mtime_ns // 1_000_000

    def manifest(self) -> Manifest:
        refs = []
        for i in range(len(self.blocks) // 32):
            offset = i * self.block_size
            refs.append(BlockRef(self.blocks[i * 32:(i + 1) * 32].hex(),
                                 min(self.block_size, self.size - offset), offset))
        return Manifest(self.hash, self.size, tuple(refs))

    @staticmethod
    def pack_blocks(manifest: Manifest) -> tuple[int, bytes]:
        """(block size, packed hashes) of a manifest from ``split_file``."""
        size = manifest.blocks[0].size if manifest.blocks else 0
        return size, b"".join(bytes.fromhex(b.hash) for b in manifest.blocks)


@dataclass(frozen=True, slots=True)
class Pending:
    """One change the server has not recorded yet; ``ord`` orders it among the others."""

    change: dict
    ord: int


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    id: int
    key: str
    changes: list[dict]
    attempts: int


def state_dir(root: Path) -> Path:
    return root / RESERVED_DIR


class ShareState:
    """All reads and writes of ``share.db``; every write that must survive a crash is one
    transaction."""

    def __init__(self, root: Path, readonly: bool = False) -> None:
        self.root = root
        path = state_dir(root) / DB_NAME
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                      timeout=5)
        else:
            path.parent.mkdir(exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a killed process (not a power cut), at a fraction of FULL's cost.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        self.db.row_factory = sqlite3.Row
        self._ord = 0 if readonly else self.db.execute(
            "SELECT COALESCE(MAX(ord), 0) FROM local").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- meta ---------------------------------------------------------------------------------------

    def get(self, key: str, default: object = None) -> object:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, **values: object) -> None:
        with self.tx() as db:
            db.executemany("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                           " SET value = excluded.value",
                           [(k, json.dumps(v)) for k, v in values.items()])

    def add_counter(self, key: str, amount: int) -> None:
        self.set(**{key: int(self.get(key, 0)) + amount})

    # -- the local index ----------------------------------------------------------------------------

    def local(self, path: str) -> LocalFile | None:
        row = self.db.execute("SELECT * FROM local WHERE path = ? AND hash IS NOT NULL",
                              (path,)).fetchone()
        return _local(row) if row else None

    def local_paths(self, prefix: str = "") -> set[str]:
        """Live indexed paths equal to ``prefix`` or under ``prefix/`` (all with ``""``)."""
        if not prefix:
            rows = self.db.execute("SELECT path FROM local WHERE hash IS NOT NULL")
        else:
            rows = self.db.execute(
                "SELECT path FROM local WHERE hash IS NOT NULL AND (path = ? OR"
                " (path >= ? AND path < ?))", (prefix, prefix + "/", prefix + "0"))
        return {r[0] for r in rows}

    def same_file(self, ino: int, size: int, mtime_ns: int) -> LocalFile | None:
        """An indexed file with this inode, size and mtime: the same bytes (a rename or a hard
        link), so its hash can be reused without reading the file."""
        row = self.db.execute(
            "SELECT * FROM local WHERE ino = ? AND size = ? AND mtime_ns = ? AND hash IS NOT NULL"
            " LIMIT 1", (ino, size, mtime_ns)).fetchone()
        return _local(row) if row else None

    def _next_ord(self) -> int:
        self._ord += 1
        return self._ord

    def put_local(self, f: LocalFile) -> None:
        """Record a hashed file. The change's place in the send order moves only if the content
        did (a touch that leaves the bytes alone is not a change)."""
        with self.tx() as db:
            old = db.execute("SELECT hash, ord FROM local WHERE path = ?", (f.path,)).fetchone()
            ord_ = old["ord"] if old and old["hash"] == f.hash else self._next_ord()
            db.execute("INSERT OR REPLACE INTO local VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (f.path, f.fspath, f.size, f.mtime_ns, f.ino, f.hash, f.block_size,
                        f.blocks, ord_))

    def remove_local(self, paths: Iterable[str]) -> int:
        """Files gone from the folder: tombstones if the server has them, else forgotten."""
        n = 0
        with self.tx() as db:
            for path in paths:
                if db.execute("SELECT 1 FROM remote WHERE path = ?", (path,)).fetchone():
                    db.execute("UPDATE local SET hash = NULL, fspath = NULL, blocks = NULL,"
                               " ord = ? WHERE path = ? AND hash IS NOT NULL",
                               (self._next_ord(), path))
                else:
                    db.execute("DELETE FROM local WHERE path = ?", (path,))
                n += 1
        return n

    def invalidate(self, path: str) -> None:
        """Forget the stat of a file whose bytes no longer match its hash, so it is re-hashed."""
        self.db.execute("UPDATE local SET mtime_ns = -1 WHERE path = ?", (path,))

    # -- the difference: what the server has yet to record ------------------------------------------

    def pending(self, exclude: set[tuple[str, str | None]] = frozenset()) -> list[Pending]:
        """Changes that make ``remote`` equal ``local``, in the order they were seen."""
        out: list[Pending] = []
        for r in self.db.execute(
                "SELECT l.path, l.hash, l.size, l.mtime_ns, l.ord, r.path IS NULL AS new"
                " FROM local l LEFT JOIN remote r ON r.path = l.path"
                " WHERE l.hash IS NOT NULL AND (r.path IS NULL OR r.hash != l.hash)"):
            change = {"path": r["path"], "op": "create" if r["new"] else "update",
                      "hash": r["hash"], "size": r["size"],
                      "mtime": max(0, r["mtime_ns"]) // 1_000_000}  # the server takes >= 0
            out.append(Pending(change, r["ord"]))
        for r in self.db.execute(
                "SELECT r.path, COALESCE(l.ord, 0) AS ord FROM remote r"
                " LEFT JOIN local l ON l.path = r.path WHERE l.path IS NULL OR l.hash IS NULL"):
            out.append(Pending({"path": r["path"], "op": "delete", "hash": None, "size": None,
                                "mtime": None}, r["ord"]))
        out = [p for p in out if (p.change["path"], p.change["hash"]) not in exclude]
        out.sort(key=lambda p: (p.ord, p.change["path"]))
        return out

    # -- the server's side --------------------------------------------------------------------------

    def replace_remote(self, files: list[dict]) -> None:
        """Take the server's ``/files`` snapshot as the truth about what it holds."""
        with self.tx() as db:
            db.execute("DELETE FROM remote")
            db.executemany("INSERT INTO remote VALUES (?, ?, ?, ?)",
                           [(f["path"], f["hash"], f["size"], f.get("mtime")) for f in files])
            db.execute("DELETE FROM local WHERE hash IS NULL AND path NOT IN"
                       " (SELECT path FROM remote)")

    def remote(self, path: str) -> tuple[str, int] | None:
        row = self.db.execute("SELECT hash, size FROM remote WHERE path = ?", (path,)).fetchone()
        return (row[0], row[1]) if row else None

    # -- the outbox ---------------------------------------------------------------------------------

    def freeze(self, batches: list[tuple[str, list[dict]]]) -> None:
        """Store batches (key, changes) for sending; from here on each is sent with its key only."""
        with self.tx() as db:
            db.executemany("INSERT INTO outbox (idempotency_key, changes, created_at)"
                           " VALUES (?, ?, ?)",
                           [(key, json.dumps(changes), time.time()) for key, changes in batches])

    def outbox(self) -> list[OutboxBatch]:
        return [OutboxBatch(r["id"], r["idempotency_key"], json.loads(r["changes"]), r["attempts"])
                for r in self.db.execute("SELECT * FROM outbox ORDER BY id")]

    def attempt(self, batch_id: int) -> None:
        self.db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (batch_id,))

    def drop(self, batch_id: int) -> None:
        self.db.execute("DELETE FROM outbox WHERE id = ?", (batch_id,))

    def posted(self, batch: OutboxBatch, last_seq: int) -> None:
        """The server recorded ``batch``: apply it to ``remote`` and retire it, atomically."""
        with self.tx() as db:
            for c in batch.changes:
                if c["op"] == "delete":
                    db.execute("DELETE FROM remote WHERE path = ?", (c["path"],))
                    db.execute("DELETE FROM local WHERE path = ? AND hash IS NULL", (c["path"],))
                else:
                    db.execute("INSERT OR REPLACE INTO remote VALUES (?, ?, ?, ?)",
                               (c["path"], c["hash"], c["size"], c["mtime"]))
            db.execute("DELETE FROM outbox WHERE id = ?", (batch.id,))
            db.execute("INSERT INTO meta VALUES ('last_posted_seq', ?) ON CONFLICT (key)"
                       " DO UPDATE SET value = excluded.value", (json.dumps(last_seq),))
            db.execute("INSERT INTO meta VALUES ('changes_posted', ?) ON CONFLICT (key) DO UPDATE"
                       " SET value = CAST(value AS INTEGER) + excluded.value",
                       (len(batch.changes),))

    def reflected(self, batch: OutboxBatch) -> bool:
        """True if ``remote`` (fresh from the server) already shows every change of ``batch``.
        Such a batch is dropped rather than resent: even past the server's idempotency window
        it cannot be posted twice."""
        for c in batch.changes:
            have = self.remote(c["path"])
            if (c["op"] == "delete") != (have is None):
                return False
            if have is not None and have[0] != c["hash"]:
                return False
        return True

    def queued_count(self) -> int:
        """Changes the server has yet to record (a frozen batch's changes count until posted)."""
        return len(self.pending())


def _local(row: sqlite3.Row) -> LocalFile:
    return LocalFile(row["path"], row["fspath"], row["size"], row["mtime_ns"], row["ino"],
                     row["hash"], row["block_size"], row["blocks"])
