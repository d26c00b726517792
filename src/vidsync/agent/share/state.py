"""The sending side's view of the folder's database (``agent/db.py``): the index and the outbox.

- ``idx``: what the folder holds, as last hashed (path, stat, SHA-256, block hashes). A rescan
  hashes only files whose stat differs from it. A deleted file stays as a tombstone (``hash``
  NULL) while the server has it, so deletes keep their place in the order.
- ``local``: the synced version of each path (shared with the receiving side): what the server
  and this folder last agreed on. Its hash is the ``base`` of the next change to the path.
- ``outbox``: batches frozen for sending, each with the ``Idempotency-Key`` it is sent with. A
  batch is written here before its first attempt and removed in the same transaction that records
  its result, so a retry after ``kill -9`` reuses the key and nothing is posted twice.
- ``meta``: the project, the last posted seq, byte counters and what the agent is doing now.

The journal of changes the server has not seen is the difference ``idx`` minus ``local``: while
the server is unreachable the watcher keeps updating ``idx``, and on reconnect the difference is
one coalesced batch (a file edited ten times offline is sent once, at its latest content), in the
order the changes were seen.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vidsync.agent.db import Transaction, connect
from vidsync.agent.mirror.state import LocalFile as Synced
from vidsync.agent.mirror.state import MirrorState, RemoteFile
from vidsync.changes import RESERVED_DIR
from vidsync.content.blocks import BlockRef, Manifest
from vidsync.content.resumable import Checkpoints

DB_NAME = "share.db"


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
    blocks: bytes | None  # the block hashes, 32 raw bytes each (None: written from the server)

    @property
    def mtime_ms(self) -> int:
        return self.mtime_ns // 1_000_000

    def manifest(self) -> Manifest | None:
        """The file's manifest, or None when only its hash is known (the upload then hashes the
        file as it reads it)."""
        if self.blocks is None:
            return None
        refs = []
        for i, block_hash in enumerate(unpack_blocks(self.blocks)):
            offset = i * self.block_size
            refs.append(BlockRef(block_hash, min(self.block_size, self.size - offset), offset))
        return Manifest(self.hash, self.size, tuple(refs))

    @staticmethod
    def pack_blocks(manifest: Manifest) -> tuple[int, bytes]:
        """(block size, packed hashes) of a manifest from ``split_file``."""
        size = manifest.blocks[0].size if manifest.blocks else 0
        return size, b"".join(bytes.fromhex(b.hash) for b in manifest.blocks)


def unpack_blocks(packed: bytes) -> tuple[str, ...]:
    """The block hashes an index row keeps packed (32 raw bytes each), in hex."""
    return tuple(packed[i:i + 32].hex() for i in range(0, len(packed), 32))


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
    """All reads and writes of the index and the outbox; every write that must survive a crash
    is one transaction. ``mirror`` (the receiving side's view of the same database) records what
    the server accepted; ``fold`` is the file system's name key (``PathPolicy.fold``)."""

    def __init__(self, root: Path, readonly: bool = False, db_name: str = DB_NAME,
                 mirror: MirrorState | None = None,
                 fold: Callable[[str], str] = lambda p: p) -> None:
        self.root = root
        self.mirror = mirror
        self.fold = fold
        self.db = mirror.db if mirror is not None else connect(state_dir(root) / db_name, readonly)
        self._ord = 0 if readonly else self.db.execute(
            "SELECT COALESCE(MAX(ord), 0) FROM idx").fetchone()[0]

    def close(self) -> None:
        if self.mirror is None:
            self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with Transaction(self.db) as db:
            yield db

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
        row = self.db.execute("SELECT * FROM idx WHERE path = ? AND hash IS NOT NULL",
                              (path,)).fetchone()
        return _local(row) if row else None

    def checkpoints(self, path: str) -> Checkpoints | None:
        """The saved hash states of the indexed version of ``path``, if any."""
        row = self.db.execute(
            "SELECT i.blocks, h.states FROM idx i JOIN hash_states h"
            " ON h.path = i.path AND h.hash = i.hash WHERE i.path = ? AND i.blocks IS NOT NULL",
            (path,)).fetchone()
        return None if row is None else Checkpoints.unpack(unpack_blocks(row[0]), row[1])

    def keep_checkpoints(self, kept: list[tuple[str, str, Checkpoints]]) -> None:
        """Save ``(path, hash, checkpoints)``: the states of the version of ``path`` with that
        hash (used while ``idx`` holds that version; gone with its row)."""
        if kept:
            with self.tx() as db:
                db.executemany("INSERT OR REPLACE INTO hash_states VALUES (?, ?, ?)",
                               [(p, h, c.pack_states()) for p, h, c in kept])

    def local_paths(self, prefix: str = "") -> set[str]:
        """Live indexed paths equal to ``prefix`` or under ``prefix/`` (all with ``""``)."""
        if not prefix:
            rows = self.db.execute("SELECT path FROM idx WHERE hash IS NOT NULL")
        else:
            rows = self.db.execute(
                "SELECT path FROM idx WHERE hash IS NOT NULL AND (path = ? OR"
                " (path >= ? AND path < ?))", (prefix, prefix + "/", prefix + "0"))
        return {r[0] for r in rows}

    def same_file(self, ino: int, size: int, mtime_ns: int) -> LocalFile | None:
        """An indexed file with this inode, size and mtime: the same bytes (a rename or a hard
        link), so its hash can be reused without reading the file."""
        row = self.db.execute(
            "SELECT * FROM idx WHERE ino = ? AND size = ? AND mtime_ns = ? AND hash IS NOT NULL"
            " AND blocks IS NOT NULL LIMIT 1", (ino, size, mtime_ns)).fetchone()
        return _local(row) if row else None

    def _next_ord(self) -> int:
        self._ord += 1
        return self._ord

    def stats(self, paths: list[str]) -> dict[str, tuple[tuple[int, int, int], str]]:
        """``path -> ((size, mtime_ns, ino), fspath)`` for those of ``paths`` that are indexed
        (live), in a few queries rather than one per file."""
        out = {}
        for i in range(0, len(paths), 500):
            chunk = paths[i:i + 500]
            for r in self.db.execute(
                    "SELECT path, size, mtime_ns, ino, fspath FROM idx WHERE hash IS NOT NULL"
                    f" AND path IN ({','.join('?' * len(chunk))})", chunk):
                out[r[0]] = ((r[1], r[2], r[3]), r[4])
        return out

    def indexed_inos(self) -> set[int]:
        """The inodes ``same_file`` could find: only files with these need that lookup."""
        return {r[0] for r in self.db.execute(
            "SELECT ino FROM idx WHERE hash IS NOT NULL AND blocks IS NOT NULL")}

    def put_local(self, f: LocalFile) -> None:
        self.put_many([f])

    def put_many(self, files: list[LocalFile]) -> None:
        """Record hashed files, in one transaction. A change's place in the send order moves
        only if the content did (a touch that leaves the bytes alone is not a change). A file
        back at its synced content is no local change any more: the synced version takes its
        new stat."""
        if not files:
            return
        with self.tx() as db:
            old = {}
            for i in range(0, len(files), 500):
                chunk = [f.path for f in files[i:i + 500]]
                old.update((r[0], (r[1], r[2])) for r in db.execute(
                    f"SELECT path, hash, ord FROM idx WHERE path IN ({','.join('?' * len(chunk))})",
                    chunk))
            rows = []
            for f in files:
                prev = old.get(f.path)
                ord_ = prev[1] if prev and prev[0] == f.hash else self._next_ord()
                old[f.path] = (f.hash, ord_)  # a path twice in one call keeps its first place
                rows.append((f.path, f.fspath, f.size, f.mtime_ns, f.ino, f.hash, f.block_size,
                             f.blocks, ord_))
            db.executemany("INSERT OR REPLACE INTO idx VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            # Back at the synced content: no pending edit, and the synced version's new stat.
            db.executemany("DELETE FROM edits WHERE path = ? AND EXISTS (SELECT 1 FROM local"
                           " WHERE path = ? AND hash = ?)", [(f.path, f.path, f.hash) for f in files])
            db.executemany("UPDATE local SET size = ?, mtime_ns = ?, ino = ?, ctime_ns = NULL"
                           " WHERE path = ? AND hash = ?",
                           [(f.size, f.mtime_ns, f.ino, f.path, f.hash) for f in files])

    def remove_local(self, paths: Iterable[str]) -> int:
        """Files gone from the folder: tombstones if they were synced, else forgotten."""
        n = 0
        with self.tx() as db:
            for path in paths:
                if db.execute("SELECT 1 FROM local WHERE path = ?", (path,)).fetchone():
                    db.execute("UPDATE idx SET hash = NULL, fspath = NULL, blocks = NULL,"
                               " ord = ? WHERE path = ? AND hash IS NOT NULL",
                               (self._next_ord(), path))
                else:
                    db.execute("DELETE FROM idx WHERE path = ?", (path,))
                n += 1
        return n

    def invalidate(self, path: str) -> None:
        """Forget the stat of a file whose bytes no longer match its hash, so it is re-hashed."""
        self.db.execute("UPDATE idx SET mtime_ns = -1 WHERE path = ?", (path,))

    def written(self, path: str, synced: Synced | None) -> None:
        """The receiving side wrote ``path`` from the server (``synced``: its record, with hash
        and stat) or removed it: the index takes the same, so the write is never sent back. Runs
        inside the receiving side's transaction."""
        if synced is None:
            self.db.execute("DELETE FROM idx WHERE path = ?", (path,))
            return
        old = self.db.execute("SELECT ord FROM idx WHERE path = ?", (path,)).fetchone()
        # The same content as indexed (e.g. this folder's own post, come back): its block hashes
        # (and so its saved hash states) still hold.
        self.db.execute(
            "INSERT INTO idx VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?) ON CONFLICT (path) DO UPDATE"
            " SET fspath = excluded.fspath, size = excluded.size, mtime_ns = excluded.mtime_ns,"
            " ino = excluded.ino, hash = excluded.hash, ord = excluded.ord,"
            " block_size = CASE WHEN idx.hash = excluded.hash THEN idx.block_size END,"
            " blocks = CASE WHEN idx.hash = excluded.hash THEN idx.blocks END",
            (path, path, synced.size, synced.mtime_ns, synced.ino, synced.hash,
             old["ord"] if old else self._next_ord()))

    def move(self, path: str, new_path: str, new_fspath: str) -> None:
        """The file indexed at ``path`` was renamed to ``new_path`` by the agent (a conflict
        copy): its entry follows, so it is sent as a new file without being hashed again."""
        with self.tx() as db:
            db.execute("DELETE FROM idx WHERE path = ?", (new_path,))
            db.execute("UPDATE idx SET path = ?, fspath = ?, ord = ? WHERE path = ?"
                       " AND hash IS NOT NULL", (new_path, new_fspath, self._next_ord(), path))
            db.execute("DELETE FROM idx WHERE path = ?", (path,))

    def forget(self, path: str) -> None:
        """Drop the index entry (a delete that lost to a modification)."""
        self.db.execute("DELETE FROM idx WHERE path = ?", (path,))

    # -- the difference: what the server has yet to record ------------------------------------------

    def pending(self, exclude: set[tuple[str, str | None]] = frozenset()) -> list[Pending]:
        """Changes that make the synced versions equal the index, in the order they were seen;
        each carries ``base``, the hash the local copy was derived from (None for a new file)."""
        out: list[Pending] = []
        for r in self.db.execute(
                "SELECT i.path, i.hash, i.size, i.mtime_ns, i.ord, s.hash AS base FROM idx i"
                " LEFT JOIN local s ON s.path = i.path"
                " WHERE i.hash IS NOT NULL AND (s.path IS NULL OR s.hash != i.hash)"):
            change = {"path": r["path"], "op": "create" if r["base"] is None else "update",
                      "hash": r["hash"], "size": r["size"],
                      "mtime": max(0, r["mtime_ns"]) // 1_000_000,  # the server takes >= 0
                      "base": r["base"]}
            out.append(Pending(change, r["ord"]))
        for r in self.db.execute(
                "SELECT i.path, i.ord, s.hash AS base FROM idx i JOIN local s ON s.path = i.path"
                " WHERE i.hash IS NULL"):
            out.append(Pending({"path": r["path"], "op": "delete", "hash": None, "size": None,
                                "mtime": None, "base": r["base"]}, r["ord"]))
        out = [p for p in out if (p.change["path"], p.change["hash"]) not in exclude]
        out.sort(key=lambda p: (p.ord, p.change["path"]))
        return out

    def remote(self, path: str) -> tuple[str, int] | None:
        """The synced version of ``path`` (hash, size), if any."""
        row = self.db.execute("SELECT hash, size FROM local WHERE path = ?", (path,)).fetchone()
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

    def posted(self, batch: OutboxBatch, results: list[dict], last_seq: int) -> None:
        """The server recorded ``batch`` (``results``: each change's seq): each change becomes the
        synced version of its path, and the batch is retired, atomically."""
        seqs = [r.get("seq", last_seq) for r in results] + [last_seq] * len(batch.changes)
        with self.tx() as db:
            for c, seq in zip(batch.changes, seqs, strict=False):
                path = c["path"]
                if c["op"] == "delete":
                    db.execute("DELETE FROM idx WHERE path = ? AND hash IS NULL", (path,))
                    synced = None
                else:
                    i = db.execute("SELECT * FROM idx WHERE path = ?", (path,)).fetchone()
                    if i is None:  # deleted here while the post was on its way: a delete follows
                        db.execute("INSERT INTO idx (path, ord) VALUES (?, ?)",
                                   (path, self._next_ord()))
                    same = i is not None and i["hash"] == c["hash"]
                    synced = Synced(path, c["hash"], c["size"], i["mtime_ns"] if same else -1,
                                    i["ino"] if same else -1)
                if self.mirror is not None:
                    self.mirror.posted(RemoteFile(path, c["hash"], c["size"], c["mtime"], seq),
                                       synced, self.fold(path))
            db.execute("DELETE FROM outbox WHERE id = ?", (batch.id,))
            db.execute("INSERT INTO meta VALUES ('last_posted_seq', ?) ON CONFLICT (key)"
                       " DO UPDATE SET value = excluded.value", (json.dumps(last_seq),))
            db.execute("INSERT INTO meta VALUES ('changes_posted', ?) ON CONFLICT (key) DO UPDATE"
                       " SET value = CAST(value AS INTEGER) + excluded.value",
                       (len(batch.changes),))

    def queued_count(self) -> int:
        """Changes the server has yet to record (a frozen batch's changes count until posted)."""
        return len(self.pending())


def _local(row: sqlite3.Row) -> LocalFile:
    return LocalFile(row["path"], row["fspath"], row["size"], row["mtime_ns"], row["ino"],
                     row["hash"], row["block_size"], row["blocks"])
