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
from vidsync.agent.share.scanner import Entry, probe, server_path, walk
from vidsync.agent.share.state import LocalFile, ShareState
from vidsync.content.blocks import split_file

Progress = Callable[[int], None]
log = logging.getLogger("vidsync.share")


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
        changed = False
        found = {p: probe(self.root, self.rules, p) for p in sorted(fspaths)}
        for fspath, what in sorted(found.items(), key=lambda item: item[1] is None):
            changed |= await self._one(fspath, what)
        return changed

    async def rescan(self) -> bool:
        return await self._dir("")

    async def _one(self, fspath: str, found: Entry | str | None) -> bool:
        if isinstance(found, Entry):
            return await self._file(found)
        if found == "dir":
            return await self._dir(fspath)
        self.unsettled.pop(fspath, None)
        path = server_path(fspath)
        return bool(path and self.state.remove_local(self.state.local_paths(path)))

    async def _dir(self, fspath: str) -> bool:
        entries = await asyncio.to_thread(lambda: list(walk(self.root, self.rules, fspath)))
        prefix = server_path(fspath) if fspath else ""
        if prefix is None:
            return False
        changed = False
        seen = set()
        for entry in entries:
            if entry.path in seen:  # two names on disk with one NFC form: share the first
                log.warning("not shared: %r has the same name as another file once normalized",
                            entry.fspath)
                continue
            seen.add(entry.path)
            changed |= await self._file(entry)
        gone = self.state.local_paths(prefix) - seen
        gone_fs = {p for p in self.unsettled if p == fspath or p.startswith(fspath + "/")
                   or not fspath}
        for p in gone_fs:
            if server_path(p) not in seen:
                self.unsettled.pop(p, None)
        return bool(self.state.remove_local(gone)) or changed

    async def _file(self, entry: Entry) -> bool:
        known = self.state.local(entry.path)
        if known and (known.size, known.mtime_ns, known.ino) == entry.sig \
                and known.fspath == entry.fspath:
            self.unsettled.pop(entry.fspath, None)
            return False
        same = self.state.same_file(entry.ino, entry.size, entry.mtime_ns)
        if same is not None:  # renamed or hard-linked: same inode, size and mtime, same bytes
            self.unsettled.pop(entry.fspath, None)
            self._put(entry, same.hash, same.block_size, same.blocks)
            return True
        if not self._settled(entry):
            return False
        try:
            manifest = await asyncio.to_thread(split_file, self.root / entry.fspath, self._hashed)
        except OSError as e:  # unreadable, or deleted meanwhile (its own event follows)
            self.unsettled.pop(entry.fspath, None)
            if not isinstance(e, FileNotFoundError):
                log.warning("cannot read %r (skipped until it changes): %s", entry.fspath, e)
            return False
        after = probe(self.root, self.rules, entry.fspath)
        if not isinstance(after, Entry) or after.sig != entry.sig or manifest.size != entry.size:
            self.unsettled[entry.fspath] = (after.sig if isinstance(after, Entry) else entry.sig,
                                            time.monotonic())
            return False
        self.unsettled.pop(entry.fspath, None)
        self._put(entry, manifest.hash, *LocalFile.pack_blocks(manifest))
        return True

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

    def _put(self, entry: Entry, digest: str, block_size: int, blocks: bytes) -> None:
        self.state.put_local(LocalFile(entry.path, entry.fspath, entry.size, entry.mtime_ns,
                                       entry.ino, digest, block_size, blocks))
