"""A synced folder's one state database (SQLite, WAL) in ``DIR/.vidsync/``.

One schema for every folder, whichever way it syncs: ``share.db`` in a folder its owner shared,
``mirror.db`` in a joined one (the name says how the folder came to be; the tables are the same).
Three views of each path meet here:

- ``remote``: the server's version as of ``meta.last_seq`` (the log, as followed; a null hash is a
  deletion not yet applied here).
- ``local``: the *synced* version, the one this folder and the server last agreed on, with the
  stat of the file when they did (the agent wrote it from the server, or the server recorded the
  agent's post of it). A path whose disk state differs from it was changed here.
- ``idx``: what the folder holds, as last hashed (with the block hashes, for uploads), and
  tombstones for files deleted here. A change to send is ``idx`` differing from ``local``; its
  ``base`` is ``local``'s hash.

``hash_states`` keeps, for a big file's version in ``idx`` (the same ``hash``), the SHA-256 states
at some block boundaries, so its next edit is hashed from its first changed block even after a
restart (``content/resumable.py``).

``dirty``, ``edits`` and ``failures`` belong to the receiving side (``agent/mirror/state.py``),
``idx``, ``hash_states`` and ``outbox`` to the sending side (``agent/share/state.py``). Both open the
same connection, so a change that touches both (recording a post, writing a file from the server) is
one transaction.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# The order in which pending paths are applied (``dirty.ord``, from the path's ``remote`` row as
# ``r``): deletions first, then oldest change first. Kept in the row, under an index, so the next
# few pending paths are read in order rather than sorted out of all of them.
DIRTY_ORD = "(r.hash IS NOT NULL) * 9007199254740992 + r.seq"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS remote (
  path TEXT PRIMARY KEY, hash TEXT, size INTEGER, mtime INTEGER, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS remote_seq ON remote(seq);
CREATE TABLE IF NOT EXISTS local (
  path TEXT PRIMARY KEY, fold TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL, ino INTEGER NOT NULL, ctime_ns INTEGER);
CREATE INDEX IF NOT EXISTS local_fold ON local(fold);
CREATE TABLE IF NOT EXISTS dirty (path TEXT PRIMARY KEY, ord INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS edits (
  path TEXT PRIMARY KEY, kind TEXT NOT NULL, detected_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
  path TEXT PRIMARY KEY, hash TEXT, error TEXT NOT NULL, attempts INTEGER NOT NULL,
  retry_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS idx (
  path TEXT PRIMARY KEY, fspath TEXT, size INTEGER, mtime_ns INTEGER, ino INTEGER, hash TEXT,
  block_size INTEGER, blocks BLOB, ord INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idx_ino ON idx (ino);
CREATE TABLE IF NOT EXISTS hash_states (
  path TEXT PRIMARY KEY, hash TEXT NOT NULL, states BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS idx_gone AFTER DELETE ON idx
  BEGIN DELETE FROM hash_states WHERE path = old.path; END;
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL, changes TEXT NOT NULL,
  created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
"""


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """The folder's database, created (and upgraded) if needed; read-only for ``status``."""
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=5)
        db.row_factory = sqlite3.Row
        return db
    path.parent.mkdir(mode=0o700, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL survives a killed process; a power cut may lose the last commits, which only
    # means re-checking a few files: the server's log is the source of truth.
    db.execute("PRAGMA synchronous=NORMAL")
    with Transaction(db):
        _upgrade_share_layout(db)
    db.executescript(SCHEMA)
    if "ctime_ns" not in _columns(db, "local"):  # a folder from before ctimes were recorded
        db.execute("ALTER TABLE local ADD COLUMN ctime_ns INTEGER")
    if "ord" not in _columns(db, "dirty"):  # a folder from before pending paths kept their order
        with Transaction(db):
            db.execute("ALTER TABLE dirty ADD COLUMN ord INTEGER NOT NULL DEFAULT 0")
            db.execute(f"UPDATE dirty SET ord = coalesce((SELECT {DIRTY_ORD} FROM remote r"
                       " WHERE r.path = dirty.path), 0)")
    db.execute("CREATE INDEX IF NOT EXISTS dirty_ord ON dirty (ord)")
    db.row_factory = sqlite3.Row
    return db


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _upgrade_share_layout(db: sqlite3.Connection) -> None:
    """A folder shared before agents synced both ways had ``local`` (the index) and ``remote``
    (what the server held as of the last post). Rename the index, and take the old ``remote``
    rows as the synced versions (with the index's stat where the index agrees), so nothing that
    was in sync looks changed."""
    if "fspath" not in _columns(db, "local"):
        return
    db.execute("ALTER TABLE local RENAME TO idx")
    db.execute("ALTER TABLE remote RENAME TO old_remote")
    db.execute(
        "CREATE TABLE local (path TEXT PRIMARY KEY, fold TEXT NOT NULL, hash TEXT NOT NULL,"
        " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ino INTEGER NOT NULL,"
        " ctime_ns INTEGER)")
    db.execute("INSERT INTO local SELECT r.path, r.path, r.hash, r.size,"
               " CASE WHEN i.hash = r.hash THEN i.mtime_ns ELSE -1 END,"
               " CASE WHEN i.hash = r.hash THEN i.ino ELSE -1 END, NULL"
               " FROM old_remote r LEFT JOIN idx i ON i.path = r.path")
    db.execute("DROP TABLE old_remote")
    db.execute("DROP INDEX IF EXISTS local_ino")


class Transaction:
    """``with Transaction(db):`` BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); a nested use
    joins the outer transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        self.outer = not self.db.in_transaction
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self.outer:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
