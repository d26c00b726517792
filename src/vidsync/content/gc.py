"""The garbage collector: remove stored content no kept version needs, and measure usage exactly.

A version's content is kept while it is live, and for ``retention`` after the event that replaced
or deleted it (the store's ``version_refs``). Each project is collected in two steps:

1. **Mark** (reads only): the kept versions' manifests give the kept blocks; a file of one block
   has no manifest file (content/blobstore.py), so a block named by a kept version's hash is
   kept as that file's content. A manifest or block written or touched within ``grace`` is kept
   too, whatever the log says (an upload whose change is not posted yet). Everything else is a
   candidate. The same pass measures usage.
2. **Sweep**: candidates are deleted in small chunks, each under the project's exclusive lock,
   and only if their mtime is still older than ``grace`` there. Requests that are about to rely on
   content refresh its mtime under the shared lock first (``BlobStore.keep``/``touch_blocks``), so
   a request and the sweep cannot both win: see content/blobstore.py.

Manifests are swept before blocks, so a crash mid-way leaves only unreferenced blocks, which the
next run removes: the collector keeps no state of its own, and running it twice is harmless. One
collection at a time per blob directory: a second (another node, ``vidsync gc``) skips its turn.

Also removed: upload temp files older than ``partial_max_age`` (partial uploads, files a crash
left), what a crashed project deletion left (``.deleted-*``), and directories of projects the
database no longer has.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from vidsync.content.blobstore import BlobStore
from vidsync.content.blocks import HASH_RE
from vidsync.store import Store, Usage, VersionRefs

log = logging.getLogger("vidsync.gc")

DAY_S = 24 * 3600.0
SWEEP_CHUNK = 500
GLOBAL_LOCK = ".gc.lock"


@dataclass(slots=True)
class ProjectResult:
    project_id: str
    usage: Usage
    removed_manifests: int = 0
    removed_blocks: int = 0
    removed_bytes: int = 0
    removed_tmp: int = 0


@dataclass(slots=True)
class Report:
    skipped: bool = False  # another collection held the lock
    seconds: float = 0.0
    projects: list[ProjectResult] = field(default_factory=list)
    removed_dirs: int = 0

    def to_json(self) -> dict:
        return {"skipped": self.skipped, "seconds": round(self.seconds, 3),
                "removed_dirs": self.removed_dirs,
                "projects": [{"project_id": p.project_id, **p.usage.to_json(),
                              "removed_manifests": p.removed_manifests,
                              "removed_blocks": p.removed_blocks,
                              "removed_bytes": p.removed_bytes, "removed_tmp": p.removed_tmp}
                             for p in self.projects]}


@dataclass(slots=True)
class Marked:
    """What a mark found: the usage, and the candidates the sweep may delete."""

    now: float
    usage: Usage
    manifests: list[str]  # candidate manifest paths
    blocks: list[tuple[str, int]]  # candidate block paths and sizes


class Collector:
    def __init__(self, store: Store, blobs: BlobStore, retention_s: float,
                 partial_max_age_s: float = DAY_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.blobs = blobs
        self.retention_s = retention_s
        self.partial_max_age_s = partial_max_age_s
        self.clock = clock

    @property
    def grace_s(self) -> float:
        return self.blobs.gc_grace_s

    async def collect(self) -> Report:
        """One collection of every project; skipped if another one holds the blob directory."""
        started = time.monotonic()
        report = Report()
        with self._global_lock() as held:
            if not held:
                report.skipped = True
                return report
            # Directories first, then the projects: a directory listed before the query belongs
            # to a project that existed (uploads need one), so only a deleted one is missing.
            dirs = await asyncio.to_thread(self._project_dirs)
            ids = set(await self.store.project_ids())
            for project_id in sorted(ids & set(dirs)):
                report.projects.append(await self.collect_project(project_id))
            report.removed_dirs = await asyncio.to_thread(
                self._remove_leftover_dirs, [d for d in dirs if d not in ids])
        report.seconds = time.monotonic() - started
        return report

    async def collect_project(self, project_id: str, dry_run: bool = False) -> ProjectResult:
        """Mark, then (unless ``dry_run``) sweep one project. Safe to run beside live traffic.
        The usage measured is kept in the store, where every node (and the next start) reads
        it instead of measuring again."""
        marked = await self.mark(project_id)
        result = ProjectResult(project_id, marked.usage) if dry_run else \
            await self.sweep(project_id, marked)
        await self.store.save_usage(project_id, result.usage)
        return result

    async def mark(self, project_id: str) -> Marked:
        now = self.clock()
        refs = await self.store.version_refs(
            project_id, datetime.fromtimestamp(now - self.retention_s, UTC))
        return await asyncio.to_thread(self._mark, project_id, refs, now)

    async def sweep(self, project_id: str, marked: Marked) -> ProjectResult:
        result = ProjectResult(project_id, marked.usage)
        await asyncio.to_thread(self._sweep, project_id, marked, marked.now, result)
        if result.removed_blocks:
            self.blobs.forget_usage(project_id)
            result.usage.stored_bytes -= result.removed_bytes
            result.usage.reclaimable_bytes = max(0, result.usage.reclaimable_bytes
                                                 - result.removed_bytes)
        return result

    async def usage(self, project_id: str) -> Usage:
        return (await self.collect_project(project_id, dry_run=True)).usage

    # -- steps (blocking; run on a worker thread) --------------------------------------------------

    def _mark(self, project_id: str, refs: VersionRefs, now: float) -> Marked:
        fresh_after = now - self.grace_s
        live: dict[bytes, int] = {}
        history: dict[bytes, int] = {}
        pending: set[bytes] = set()
        candidates: list[str] = []
        manifest_dir = os.path.dirname(self.blobs.manifest_path(project_id, "0" * 64))
        for entry in _scan(manifest_dir):
            file_hash = entry.name.removesuffix(".json")
            if not HASH_RE.fullmatch(file_hash):
                continue
            if file_hash in refs.live:
                into: dict[bytes, int] | None = live
            elif file_hash in refs.history:
                into = history
            elif _mtime(entry) >= fresh_after:
                into = None
            else:
                candidates.append(entry.path)
                continue
            for block_hash, size in _manifest_blocks(entry.path):
                key = bytes.fromhex(block_hash)
                if into is None:
                    pending.add(key)
                else:
                    into[key] = size
        usage = Usage(counted_at=now)
        blocks: list[tuple[str, int]] = []
        blocks_dir = os.path.dirname(os.path.dirname(self.blobs.block_path(project_id, "0" * 64)))
        for sub in _scan(blocks_dir):
            for entry in _scan(sub.path):
                try:
                    key = bytes.fromhex(entry.name)
                    st = entry.stat()
                except (ValueError, FileNotFoundError):
                    continue
                usage.stored_bytes += st.st_size
                # A kept version's file of one block: this block is all of it.
                if entry.name in refs.live:
                    live[key] = st.st_size
                elif entry.name in refs.history:
                    history.setdefault(key, st.st_size)
                if key in live or key in history:
                    continue
                if key in pending or st.st_mtime >= fresh_after:
                    usage.pending_bytes += st.st_size
                    continue
                usage.reclaimable_bytes += st.st_size
                blocks.append((entry.path, st.st_size))
        for key in live:
            history.pop(key, None)
        usage.live_bytes, usage.history_bytes = sum(live.values()), sum(history.values())
        # Blocks on disk are what counts: a kept version's block that a crash lost is not stored.
        usage.live_bytes = min(usage.live_bytes, usage.stored_bytes)
        usage.history_bytes = min(usage.history_bytes, usage.stored_bytes - usage.live_bytes)
        return Marked(now, usage, candidates, blocks)

    def _sweep(self, project_id: str, marked: Marked, now: float, result: ProjectResult) -> None:
        stale_before = now - self.grace_s
        for i in range(0, len(marked.manifests), SWEEP_CHUNK):
            with self.blobs.project_lock(project_id, exclusive=True):
                for path in marked.manifests[i:i + SWEEP_CHUNK]:
                    if _unlink_if_stale(path, stale_before) is not None:
                        result.removed_manifests += 1
                        # Its poster frame (content/media.py) and saved hash states go with it.
                        file_hash = os.path.basename(path).removesuffix(".json")
                        for derived in (self.blobs.poster_path(project_id, file_hash),
                                        self.blobs.states_path(project_id, file_hash)):
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(derived)
            time.sleep(0)  # let request threads in between chunks
        for i in range(0, len(marked.blocks), SWEEP_CHUNK):
            with self.blobs.project_lock(project_id, exclusive=True):
                for path, _ in marked.blocks[i:i + SWEEP_CHUNK]:
                    size = _unlink_if_stale(path, stale_before)
                    if size is not None:
                        result.removed_blocks += 1
                        result.removed_bytes += size
                        # A file of one block goes with its block, and so does its poster.
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.blobs.poster_path(project_id,
                                                             os.path.basename(path)))
            time.sleep(0)
        old_before = now - self.partial_max_age_s
        for entry in _scan(self.blobs.tmp_dir(project_id)):
            if _unlink_if_stale(entry.path, old_before) is not None:
                result.removed_tmp += 1

    def _project_dirs(self) -> list[str]:
        return [e.name for e in _scan(self.blobs.root) if e.is_dir() and not e.name.startswith(".")]

    def _remove_leftover_dirs(self, orphans: list[str]) -> int:
        """Directories of deleted projects: renamed-aside ones a crash left, and ones whose
        project is gone from the database (older than the grace, to be sure)."""
        removed = 0
        stale_before = self.clock() - self.grace_s
        for entry in _scan(self.blobs.root):
            doomed = entry.name.startswith(".deleted-") or (
                entry.name in orphans and _mtime(entry) < stale_before)
            if doomed and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        return removed

    @contextlib.contextmanager
    def _global_lock(self) -> Iterator[bool]:
        fd = os.open(os.path.join(self.blobs.root, GLOBAL_LOCK),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                yield False
                return
            yield True
        finally:
            os.close(fd)


def _scan(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except FileNotFoundError:
        return []


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0.0


def _manifest_blocks(path: str) -> list[tuple[str, int]]:
    """The (hash, size) of a manifest's blocks; [] if it vanished meanwhile."""
    try:
        with open(path, "rb") as f:
            data = orjson.loads(f.read())
    except FileNotFoundError:
        return []
    return [(b["hash"], b["size"]) for b in data["blocks"]]


def _unlink_if_stale(path: str, stale_before: float) -> int | None:
    """Delete ``path`` if its mtime is older than ``stale_before``: its size, or None if kept.
    Call under the project's exclusive lock, so nobody refreshes it between check and unlink."""
    try:
        st = os.stat(path)
        if st.st_mtime >= stale_before:
            return None
        os.unlink(path)
    except FileNotFoundError:
        return None
    return st.st_size
