"""Keep the local index in step with the folder: hash what changed once it has settled.

A file is hashed only when it has stopped moving: its mtime is at least ``settle_s`` old, or its
size, mtime and inode stayed the same for ``settle_s`` while we watched (which also copes with a
clock that disagrees with the file system's). After hashing, the stat is taken again; if it moved
the hash is thrown away and the file waits again, so a half-written file is never posted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from vidsync.agent.share.ignore import IgnoreRules
from vidsync.agent.share.scanner import Entry, probe, restat, server_path, walk
from vidsync.agent.share.state import LocalFile, ShareState
from vidsync.content.blocks import MIN_BLOCK_SIZE, Manifest, hash_file, read_small
from vidsync.content.resumable import Checkpoints

Progress = Callable[[int], None]
log = logging.getLogger("vidsync.share")

# Files hashed in one worker-thread job, their index rows written in one transaction: a thread
# hop and a commit per file cost more than hashing a small file.
HASH_BATCH_FILES = 500
HASH_BATCH_BYTES = 64 * 1024 * 1024
# Bytes of small files kept from hashing until they are uploaded (checked against a fresh stat
# then), so an image sequence is read once, not twice.
CONTENT_CACHE_BYTES = 64 * 1024 * 1024
# Below this many files to look up, a query per file beats reading every indexed inode.
SAME_FILE_BULK = 64


class Indexer:
    """Turns "something happened at these paths" into index updates."""

    def __init__(self, root: Path, state: ShareState, rules: IgnoreRules, settle_s: float) -> None:
        self.root = root
        self.state = state
        self.rules = rules
        self.settle_s = settle_s
        # fspath -> (stat signature, monotonic time it was first seen with that signature)
        self.unsettled: dict[str, tuple[tuple[int, int, int], float]] = {}
        self.hashed_bytes = 0
        self.on_hash_bytes: Progress | None = None
        # fspath -> ((size, mtime_ns, ino, ctime_ns) after hashing, hash, bytes) of small files
        # hashed and not uploaded yet
        self.contents: dict[str, tuple[tuple[int, int, int, int], str, bytes]] = {}
        self.contents_bytes = 0

    def next_recheck(self) -> float | None:
        """When the earliest unsettled file is due for another look (monotonic), if any."""
        if not self.unsettled:
            return None
        return min(since for _, since in self.unsettled.values()) + self.settle_s

    def due(self) -> set[str]:
        now = time.monotonic()
        return {p for p, (_, since) in self.unsettled.items() if since + self.settle_s <= now}

    async def reconcile(self, fspaths: set[str]) -> bool:
        """Bring the index up to date for these relative on-disk paths; True if it changed.

        What exists is looked at before what is gone: a renamed file's new name then finds the
        old entry still indexed (and reuses its hash), and a rename is posted as a create then a
        delete, so a mirror can copy its local file instead of downloading it again."""
        found = {p: probe(self.root, self.rules, p) for p in sorted(fspaths)}
        changed = await self._files([e for e in found.values() if isinstance(e, Entry)])
        for fspath, what in sorted(found.items(), key=lambda item: item[1] is None):
            if not isinstance(what, Entry):
                changed |= await self._one(fspath, what)
        return changed

    async def rescan(self) -> bool:
        return await self._dir("")

    async def _one(self, fspath: str, found: Entry | str | None) -> bool:
        if isinstance(found, Entry):
            return await self._files([found])
        if found == "dir":
            return await self._dir(fspath)
        self.unsettled.pop(fspath, None)
        self.take_content(fspath)
        path = server_path(fspath)
        return bool(path and self.state.remove_local(self.state.local_paths(path)))

    async def _dir(self, fspath: str) -> bool:
        entries = await asyncio.to_thread(lambda: list(walk(self.root, self.rules, fspath)))
        prefix = server_path(fspath) if fspath else ""
        if prefix is None:
            return False
        seen: set[str] = set()
        todo = []
        for entry in entries:
            if entry.path in seen:  # two names on disk with one NFC form: share the first
                log.warning("not shared: %r has the same name as another file once normalized",
                            entry.fspath)
                continue
            seen.add(entry.path)
            todo.append(entry)
        changed = await self._files(todo)
        gone = self.state.local_paths(prefix) - seen
        gone_fs = {p for p in self.unsettled if p == fspath or p.startswith(fspath + "/")
                   or not fspath}
        for p in gone_fs:
            if server_path(p) not in seen:
                self.unsettled.pop(p, None)
        return bool(self.state.remove_local(gone)) or changed

    async def _files(self, entries: list[Entry]) -> bool:
        """Index these files: skip the unchanged, reuse the hash of a renamed one, hash the
        settled rest in batches (one worker-thread job and one transaction per batch)."""
        known = self.state.stats([e.path for e in entries])
        changed = [e for e in entries if known.get(e.path) != (e.sig, e.fspath)]
        for e in entries:
            if e.path in known and known[e.path] == (e.sig, e.fspath):
                self.unsettled.pop(e.fspath, None)
        if not changed:
            return False
        # A rename or hard link keeps inode, size and mtime: look only where the inode is known.
        inos = self.state.indexed_inos() if len(changed) > SAME_FILE_BULK else None
        reused, to_hash = [], []
        for e in changed:
            same = (self.state.same_file(e.ino, e.size, e.mtime_ns)
                    if inos is None or e.ino in inos else None)
            if same is not None:  # renamed or hard-linked: same inode, size and mtime, same bytes
                self.unsettled.pop(e.fspath, None)
                reused.append(self._local(e, same.hash, same.block_size, same.blocks))
            elif self._settled(e):
                to_hash.append(e)
        self.state.put_many(reused)
        put = bool(reused)
        batch: list[Entry] = []
        size = 0
        for e in to_hash:
            if batch and (len(batch) >= HASH_BATCH_FILES or size + e.size > HASH_BATCH_BYTES):
                put |= await self._hash(batch)
                batch, size = [], 0
            batch.append(e)
            size += e.size
        if batch:
            put |= await self._hash(batch)
        return put

    async def _hash(self, entries: list[Entry]) -> bool:
        """Hash settled files in one worker-thread job, then index those that did not move while
        they were read, in one transaction; the others wait to settle again."""
        root = self.root

        # A big file is hashed from the states saved with its indexed version (an edit then
        # costs what follows its first changed block: content/resumable.py).
        previous = {e.fspath: self.state.checkpoints(e.path) for e in entries
                    if e.size > MIN_BLOCK_SIZE}
        states: dict[str, Checkpoints | None] = {}

        def work() -> list[tuple[Entry, Manifest | OSError, bytes | None, Entry | None]]:
            out: list[tuple[Entry, Manifest | OSError, bytes | None, Entry | None]] = []
            for e in entries:
                try:
                    small = read_small(root / e.fspath) if e.size <= MIN_BLOCK_SIZE else None
                    if small is not None:
                        result, data = small
                        self._hashed(len(data))
                    else:
                        result, states[e.fspath] = hash_file(
                            root / e.fspath, self._hashed, previous.get(e.fspath))
                        data = None
                except OSError as err:  # unreadable, or deleted meanwhile
                    out.append((e, err, None, None))
                    continue
                out.append((e, result, data, restat(root, e)))
            return out

        files = []
        kept: list[tuple[str, str, Checkpoints]] = []
        results = await asyncio.to_thread(work)
        for e, result, data, after in results:
            if isinstance(result, OSError):
                self.unsettled.pop(e.fspath, None)
                if not isinstance(result, FileNotFoundError):  # (a deletion's event follows)
                    log.warning("cannot read %r (skipped until it changes): %s", e.fspath, result)
                continue
            if after is None or after.sig != e.sig or result.size != e.size:
                self.unsettled[e.fspath] = (after.sig if after else e.sig, time.monotonic())
                continue
            self.unsettled.pop(e.fspath, None)
            files.append(self._local(e, result.hash, *LocalFile.pack_blocks(result)))
            if data is not None:
                self._keep(after, result.hash, data)
            if (checkpoints := states.get(e.fspath)) is not None:
                kept.append((e.path, result.hash, checkpoints))
        self.state.put_many(files)
        self.state.keep_checkpoints(kept)
        if resumed := sum(c.resumed_from for _, _, c in kept):
            self.state.add_counter("bytes_hash_resumed", resumed)
        return bool(files)

    def _keep(self, entry: Entry, digest: str, data: bytes) -> None:
        self.take_content(entry.fspath)
        self.contents[entry.fspath] = ((*entry.sig, entry.ctime_ns), digest, data)
        self.contents_bytes += len(data)
        while self.contents_bytes > CONTENT_CACHE_BYTES:  # the oldest go first
            self.take_content(next(iter(self.contents)))

    def take_content(self, fspath: str) -> tuple[tuple[int, int, int, int], str, bytes] | None:
        """The bytes of a small file as it was hashed, with its stat (ctime too: a write that
        puts size and mtime back still moves it) and hash then, if still kept; forgotten here
        either way. The caller checks both against the file before trusting the bytes."""
        kept = self.contents.pop(fspath, None)
        if kept is not None:
            self.contents_bytes -= len(kept[2])
        return kept

    def _settled(self, entry: Entry) -> bool:
        if time.time() - entry.mtime_ns / 1e9 >= self.settle_s:
            return True
        seen = self.unsettled.get(entry.fspath)
        now = time.monotonic()
        if seen and seen[0] == entry.sig:
            return now - seen[1] >= self.settle_s
        self.unsettled[entry.fspath] = (entry.sig, now)
        return False

    def _hashed(self, n: int) -> None:
        self.hashed_bytes += n
        if self.on_hash_bytes:
            self.on_hash_bytes(n)

    @staticmethod
    def _local(entry: Entry, digest: str, block_size: int, blocks: bytes | None) -> LocalFile:
        return LocalFile(entry.path, entry.fspath, entry.size, entry.mtime_ns, entry.ino, digest,
                         block_size, blocks)
