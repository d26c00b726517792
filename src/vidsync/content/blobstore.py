"""The server's content store: blocks and manifests as files, one directory per project.

Layout under the blob directory (``<data-dir>/blobs`` unless ``--blob-dir`` says otherwise; nodes
of one deployment may share it)::

    <project_id>/blocks/<first two hex digits>/<sha256>     a block's bytes
    <project_id>/manifests/<sha256>.json                    {hash, size, blocks}, for a file
                                                            of two or more blocks
    <project_id>/posters/<sha256>.jpg                       a video's poster frame (a cache)
    <project_id>/states/<sha256>.bin                        a big file's SHA-256 states (a cache)
    <project_id>/tmp/                                       writes in progress

Every file appears by ``os.replace`` of a complete temporary file, so a reader (on this node or
another) never sees half a block, and a crash leaves at most a stray temporary file. A block's
name is its hash, checked before the rename: what is stored is what was asked for.

A file of one block has no manifest file: its manifest is implied by the block. The block's name
is the SHA-256 of its bytes, which is the whole file's hash, so block ``H`` stored means file
``H`` is stored, as ``{H, size of the block, [{H, size}]}``; the empty file is always stored (no
blocks). An image sequence of small files then costs one file per frame, not two.
``get_manifest`` is the one place that answers "the manifest of file H": ``manifests/H.json`` if
present (every manifest written before this rule, one-block ones included, is still read), else
the implied one. Neither ``put_manifest`` nor ``put_small_files`` writes a manifest file for a
one-block or empty file; the collector keeps block ``H`` while a kept version names file ``H``.

Durability is settled when a manifest is stored, not per block: its blocks are fsynced (in one
pass, which lets the kernel write them back together; an fsync per block halved upload speed),
then the manifest. A manifest is what ``files/update`` requires, so an acknowledged event never
names content a power cut could lose. For a one-block file, storing its manifest is its block's
fsync (``put_manifest``), and a batch fsyncs its blocks before answering; a change naming a
one-block file sent with ``PUT`` alone (no agent does that) fsyncs it before the event is written
(``sync_implied``). A block a crash damaged before that is caught by the
manifest's whole-file hash: the blocks are then checked one by one, the damaged ones deleted and
reported missing, and the uploader sends them again.
Blocks are kept per project, not across projects, so a member of one project can never learn
whether another project holds some content (dedup probing).

Garbage collection (``vidsync.content.gc``) removes content no kept version needs. What keeps it
from removing content a request is about to use is one rule, enforced under a per-project file
lock (``<project_id>/.lock``, flock, so it holds across nodes sharing the directory): the collector
deletes a file only if, under the exclusive lock, its mtime is older than the grace period; and
every request that is about to rely on stored content (posting a manifest, appending a change,
restoring a version) refreshes the mtime of that content under the shared lock first (``keep``,
``touch_blocks``). Either the collector got there first and the request sees the content gone
(and says so: 409 ``missing_blocks``, 410 ``expired``), or the content is fresh and survives.

The filesystem is the only state, which is what lets nodes share the directory. Usage (for the
quota) is counted by scanning a project's blocks and then kept up to date in memory; the count is
refreshed every ``USAGE_TTL_S`` so what other nodes stored is seen within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson

from vidsync.content.blocks import EMPTY_HASH, MAX_BLOCK_SIZE, BlockRef, Manifest, is_hash
from vidsync.content.resumable import Checkpoints
from vidsync.writeback import start_writeback

READ_CHUNK = 1024 * 1024
USAGE_TTL_S = 60.0
# fsyncs issued side by side when a batch of small files is made durable: the filesystem's
# journal commits them together (on ext4 one fsync at a time costs ~5 ms; 32 at once ~0.5 ms each).
FSYNC_THREADS = 32
# Blocks remembered as fsynced by this process (about 0.2 KB each; 64 GiB of 1 MiB blocks).
SYNCED_BLOCKS = 65_536
# Temporary files of a batch open at once (written, waiting for their fsync).
MAX_OPEN_SMALL_FILES = 256
# How long freshly written or touched content is safe from the collector (``--gc-grace``): the
# longest a client may take between posting a manifest and the change that names it.
DEFAULT_GC_GRACE_S = 3600.0
LOCK_NAME = ".lock"
_PROJECT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,100}")


def is_implied(manifest: Manifest) -> bool:
    """Whether the store keeps no file for this manifest: one block named by the file's hash,
    or none (the empty file). See the module docstring."""
    return not manifest.blocks or manifest.blocks == (BlockRef(manifest.hash, manifest.size),)


class TooLarge(Exception):
    """The body is larger than a block may be."""


class QuotaExceeded(Exception):
    """Storing this would take the project past its quota."""

    def __init__(self, usage: int, quota: int) -> None:
        super().__init__(f"the project stores {usage} bytes of its {quota}-byte quota")
        self.usage, self.quota = usage, quota


@dataclass(slots=True)
class _Usage:
    stored: int  # bytes of blocks on disk (as last counted, plus what this node added)
    reserved: int  # bytes of uploads in progress on this node
    counted_at: float


class BlobStore:
    def __init__(self, root: str, project_quota: int,
                 gc_grace_s: float = DEFAULT_GC_GRACE_S) -> None:
        self.root = os.path.abspath(root)
        self.project_quota = project_quota
        self.gc_grace_s = gc_grace_s
        self._usage: dict[str, _Usage] = {}
        self._usage_locks: dict[str, asyncio.Lock] = {}
        # Blocks this process fsynced, with the (inode, ctime) they had then. A block file never
        # changes in place (it is only ever replaced, by a rename: new inode and ctime), so one
        # that still shows them is on disk: an edit's manifest names nearly every block of the
        # version before, and an fsync of a clean file still costs ~65 us (0.07 s per GiB of
        # 1 MiB blocks) against ~2.5 us to open and fstat it.
        self._synced: dict[tuple[str, str], tuple[int, int]] = {}
        os.makedirs(self.root, exist_ok=True)

    # -- paths --------------------------------------------------------------------------------------

    def _project_dir(self, project_id: str) -> str:
        # Project ids are server-made UUIDs; checked anyway, since they become directory names.
        if not _PROJECT_ID_RE.fullmatch(project_id):
            raise ValueError("project id unfit for a directory name")
        return os.path.join(self.root, project_id)

    def block_path(self, project_id: str, block_hash: str) -> str:
        return os.path.join(self._project_dir(project_id), "blocks", block_hash[:2], block_hash)

    def manifest_path(self, project_id: str, file_hash: str) -> str:
        return os.path.join(self._project_dir(project_id), "manifests", file_hash + ".json")

    def poster_path(self, project_id: str, file_hash: str) -> str:
        """A file's cached poster frame (made from its content, so kept per content hash)."""
        return os.path.join(self._project_dir(project_id), "posters", file_hash + ".jpg")

    def states_path(self, project_id: str, file_hash: str) -> str:
        """A verified file's saved SHA-256 states (``content/resumable.py``), so the next
        version's hash resumes from them even after a restart; removed with its manifest."""
        return os.path.join(self._project_dir(project_id), "states", file_hash + ".bin")

    def save_states(self, project_id: str, file_hash: str, checkpoints: Checkpoints) -> None:
        """Keep the states of stored file ``file_hash`` (blocking; a cache, not fsynced)."""
        self.put_cache_file(self.states_path(project_id, file_hash),
                            _blocks_digest(checkpoints.blocks) + checkpoints.pack_states())

    def load_states(self, project_id: str, file_hash: str) -> Checkpoints | None:
        """The saved states of stored file ``file_hash``, if any and if they were taken over
        the block list its manifest has (blocking)."""
        try:
            with open(self.states_path(project_id, file_hash), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        manifest = self.get_manifest(project_id, file_hash)
        if manifest is None:
            return None
        blocks = tuple(ref.hash for ref in manifest.blocks)
        if data[:32] != _blocks_digest(blocks):
            return None
        return Checkpoints.unpack(blocks, data[32:])

    def put_cache_file(self, path: str, data: bytes) -> None:
        """Write a derived file (a poster, saved states) whole or not at all; not durable, it
        can be made again. ``path`` is one of this store's (``poster_path``, ``states_path``)."""
        project_dir = os.path.dirname(os.path.dirname(path))
        tmp = os.path.join(project_dir, "tmp")
        os.makedirs(tmp, exist_ok=True)
        tmp = os.path.join(tmp, secrets.token_hex(12))
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                _finish(f, tmp, path, False)
        finally:
            _unlink_quietly(tmp)

    def _tmp_path(self, project_id: str) -> str:
        tmp = os.path.join(self._project_dir(project_id), "tmp")
        os.makedirs(tmp, exist_ok=True)
        return os.path.join(tmp, secrets.token_hex(12))

    def tmp_dir(self, project_id: str) -> str:
        return os.path.join(self._project_dir(project_id), "tmp")

    @contextlib.contextmanager
    def project_lock(self, project_id: str, exclusive: bool) -> Iterator[None]:
        """The project's collection lock (blocking): shared for requests that keep content,
        exclusive for the collector's deletions. flock, so other nodes on the directory see it."""
        directory = self._project_dir(project_id)
        os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    def touch_blocks(self, project_id: str, hashes: list[str]) -> list[str]:
        """Refresh these blocks' mtimes so a collection running now keeps them; returns the ones
        not stored (deduplicated, in order). Blocking."""
        missing = []
        with self.project_lock(project_id, exclusive=False):
            for h in dict.fromkeys(hashes):
                try:
                    os.utime(self.block_path(project_id, h))
                except FileNotFoundError:
                    missing.append(h)
        return missing

    def keep(self, project_id: str, file_hashes: list[str]) -> list[str]:
        """Make sure a collection running now keeps these files' content (manifest and blocks):
        a manifest file not touched for half the grace period is touched, blocks first; for a
        one-block file, its block. Returns the hashes whose content is gone. Blocking."""
        gone = []
        stale_before = time.time() - self.gc_grace_s / 2
        with self.project_lock(project_id, exclusive=False):
            for h in dict.fromkeys(file_hashes):
                try:
                    self._keep_one(project_id, h, stale_before)
                except FileNotFoundError:
                    gone.append(h)
        return gone

    def _keep_one(self, project_id: str, file_hash: str, stale_before: float) -> None:
        """``keep`` for one file; FileNotFoundError if its content is gone."""
        path = self.manifest_path(project_id, file_hash)
        try:
            fresh = os.stat(path).st_mtime >= stale_before
        except FileNotFoundError:
            if file_hash == EMPTY_HASH:
                return  # no bytes to keep
            if not is_hash(file_hash):
                raise
            path = self.block_path(project_id, file_hash)  # the one block is the whole file
            if os.stat(path).st_mtime < stale_before:
                os.utime(path)
            return
        if fresh:
            return
        manifest = self._manifest_file(path)
        if manifest is None:
            raise FileNotFoundError(path)
        for block_hash in {r.hash for r in manifest.blocks}:
            os.utime(self.block_path(project_id, block_hash))
        os.utime(path)

    def has_manifest(self, project_id: str, file_hash: str) -> bool:
        return self.get_manifest(project_id, file_hash) is not None

    def forget_usage(self, project_id: str) -> None:
        """Recount the project's usage on next use (after a collection removed content)."""
        u = self._usage.get(project_id)
        if u is not None:
            u.counted_at = -USAGE_TTL_S

    async def delete_project(self, project_id: str) -> None:
        """Remove everything a deleted project stored (renamed aside first, so a concurrent
        upload cannot land in a half-removed tree)."""
        src = self._project_dir(project_id)
        doomed = os.path.join(self.root, f".deleted-{project_id}-{secrets.token_hex(4)}")
        try:
            os.rename(src, doomed)
        except FileNotFoundError:
            return
        self._usage.pop(project_id, None)
        await asyncio.to_thread(shutil.rmtree, doomed, True)

    # -- blocks -------------------------------------------------------------------------------------

    def has_block(self, project_id: str, block_hash: str) -> bool:
        return os.path.isfile(self.block_path(project_id, block_hash))

    async def missing_blocks(self, project_id: str, hashes: list[str]) -> list[str]:
        """The hashes (deduplicated, in the order given) with no stored block."""
        def scan() -> list[str]:
            return [h for h in dict.fromkeys(hashes) if not self.has_block(project_id, h)]
        return await asyncio.to_thread(scan)

    async def put_block(self, project_id: str, block_hash: str, chunks: AsyncIterator[bytes],
                        declared_size: int | None,
                        on_stored: Callable[[list[bytes]], None] | None = None
                        ) -> tuple[bool, bool]:
        """Store a block from its streamed bytes: (stored, hash_ok). ``on_stored`` gets the bytes
        (as received, in parts) once they are stored, e.g. for an upload's in-order hash.

        ``hash_ok`` False: the bytes do not hash to ``block_hash`` and nothing was stored.
        ``stored`` False with ``hash_ok`` True: it was already there. Raises ``TooLarge`` past
        ``MAX_BLOCK_SIZE`` and ``QuotaExceeded``; the quota is reserved before the bytes are read so
        concurrent uploads cannot overshoot it together."""
        reserve = declared_size if declared_size is not None else MAX_BLOCK_SIZE
        if reserve > MAX_BLOCK_SIZE:
            raise TooLarge()
        try:
            await self._reserve(project_id, reserve)
        except QuotaExceeded:  # a block already stored adds nothing: still fine to send
            if await asyncio.to_thread(_touch, self.block_path(project_id, block_hash)):
                return False, True
            raise
        try:
            # The body is gathered first (at most 16 MiB), then hashed and written on a worker
            # thread in one go: no hashing on the event loop, one thread hop per block.
            parts: list[bytes] = []
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > MAX_BLOCK_SIZE:
                    raise TooLarge()
                parts.append(chunk)
            stored = await asyncio.to_thread(self._store_block, project_id, block_hash, parts)
        finally:
            self._release(project_id, reserve)
        if stored is None:
            return False, False
        if stored:
            self._add_usage(project_id, size)
            if on_stored is not None:
                on_stored(parts)
        return stored, True

    def _store_block(self, project_id: str, block_hash: str, parts: list[bytes]) -> bool | None:
        """Check and store a block's bytes (blocking): True stored, False already there, None
        if they do not hash to ``block_hash`` (nothing stored). One trip to a thread per block:
        whether it is there, its hash and its write."""
        final = self.block_path(project_id, block_hash)
        if _touch(final):  # already stored (and fresh for the collector now)
            return False
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        if digest.hexdigest() != block_hash:
            return None
        if _touch(final):  # stored meanwhile by another request
            return False
        tmp = self._tmp_path(project_id)
        try:
            with open(tmp, "wb", buffering=0) as f:
                for part in parts:
                    f.write(part)
                # The fsync that makes a manifest's blocks durable then finds them on disk.
                start_writeback(f.fileno())
                _finish(f, tmp, final, False)
        finally:
            _unlink_quietly(tmp)
        return True

    def read_block(self, project_id: str, block_hash: str) -> bytes | None:
        """A stored block's bytes, None if it is not stored (blocking)."""
        try:
            with open(self.block_path(project_id, block_hash), "rb", buffering=0) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def block_file(self, project_id: str, block_hash: str) -> str | None:
        path = self.block_path(project_id, block_hash)
        return path if os.path.isfile(path) else None

    def pieces(self, project_id: str, manifest: Manifest, start: int,
               end: int) -> Iterator[tuple[str, int, int]]:
        """Bytes ``[start, end)`` of the file ``manifest`` describes as (block file, offset in
        it, length), in order: what a server hands to ``sendfile``."""
        for ref in manifest.blocks:
            b_start, b_end = ref.offset, ref.offset + ref.size
            if b_end <= start:
                continue
            if b_start >= end:
                break
            pos = max(start, b_start) - b_start
            yield self.block_path(project_id, ref.hash), pos, min(end, b_end) - b_start - pos

    def read_range(self, project_id: str, manifest: Manifest, start: int, end: int,
                   chunk: int = READ_CHUNK) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of the file ``manifest`` describes, from its blocks (blocking:
        call ``next`` on a worker thread)."""
        for path, pos, remaining in self.pieces(project_id, manifest, start, end):
            with open(path, "rb") as f:
                f.seek(pos)
                while remaining > 0:
                    data = f.read(min(chunk, remaining))
                    if not data:
                        raise OSError(f"block {os.path.basename(path)} is shorter than its manifest says")
                    remaining -= len(data)
                    yield data

    # -- manifests ----------------------------------------------------------------------------------

    def get_manifest(self, project_id: str, file_hash: str) -> Manifest | None:
        """The manifest of the file ``file_hash``, None if it is not stored (blocking): its
        manifest file if there is one, else the one implied by block ``file_hash`` (its size is
        the block's) or, for the empty file, no blocks."""
        manifest = self._manifest_file(self.manifest_path(project_id, file_hash))
        if manifest is not None:
            return manifest
        if file_hash == EMPTY_HASH:
            return Manifest(EMPTY_HASH, 0, ())
        if not is_hash(file_hash):
            return None
        try:
            size = os.stat(self.block_path(project_id, file_hash)).st_size
        except FileNotFoundError:
            return None
        return Manifest(file_hash, size, (BlockRef(file_hash, size),))

    def sync_implied(self, project_id: str, file_hash: str) -> None:
        """Make a stored one-block file durable: fsync block ``file_hash`` unless the file has a
        manifest file (written only after its blocks were fsynced) or is empty. For a file
        named by a change without its manifest having been posted (blocking)."""
        if file_hash == EMPTY_HASH or os.path.isfile(self.manifest_path(project_id, file_hash)):
            return
        try:
            self._sync_block(project_id, file_hash)
        except FileNotFoundError:
            pass  # not stored: the caller's check says so

    def _sync_block(self, project_id: str, block_hash: str) -> None:
        """fsync a stored block, unless this process did since it was last replaced."""
        key = (project_id, block_hash)
        fd = os.open(self.block_path(project_id, block_hash), os.O_RDONLY)
        try:
            st = os.fstat(fd)
            mark = (st.st_ino, st.st_ctime_ns)
            if self._synced.get(key) == mark:
                return
            os.fsync(fd)
        finally:
            os.close(fd)
        if len(self._synced) >= SYNCED_BLOCKS:
            self._synced.clear()
        self._synced[key] = mark

    @staticmethod
    def _manifest_file(path: str) -> Manifest | None:
        try:
            with open(path, "rb") as f:
                return Manifest.from_json(orjson.loads(f.read()))
        except FileNotFoundError:
            return None

    def hash_blocks(self, project_id: str, manifest: Manifest) -> tuple[str, list[int]]:
        """Stream the stored blocks: (SHA-256 of their concatenation, indexes of blocks whose
        stored size differs from the manifest's). Blocking; reads every block (a check: the
        server itself hashes while blocks land, ``content/pending.py``)."""
        wrong = self.wrong_sizes(project_id, manifest)
        if wrong:
            return "", wrong
        digest = hashlib.sha256()
        for data in self.read_range(project_id, manifest, 0, manifest.size):
            digest.update(data)
        return digest.hexdigest(), []

    def wrong_sizes(self, project_id: str, manifest: Manifest) -> list[int]:
        """Indexes of the manifest's blocks whose stored size differs from the listed one
        (blocking; a stat per block)."""
        return [i for i, ref in enumerate(manifest.blocks)
                if os.path.getsize(self.block_path(project_id, ref.hash)) != ref.size]

    def damaged_blocks(self, project_id: str, manifest: Manifest) -> list[str]:
        """Delete and return the manifest's blocks whose bytes no longer hash to their name.
        Blocking; reads every block."""
        damaged = []
        for ref in {r.hash: r for r in manifest.blocks}.values():
            path = self.block_path(project_id, ref.hash)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while data := f.read(READ_CHUNK):
                    digest.update(data)
            if digest.hexdigest() != ref.hash:
                _unlink_quietly(path)
                damaged.append(ref.hash)
        return damaged

    def put_manifest(self, project_id: str, manifest: Manifest) -> bool:
        """Store a verified manifest, its blocks made durable first; False if it was there
        already. An implied manifest (``is_implied``) is only its block's fsync: no file is
        written, and True (nothing tells whether it was posted before). Blocking."""
        final = self.manifest_path(project_id, manifest.hash)
        if not is_implied(manifest) and os.path.isfile(final):
            return False
        for block_hash in {r.hash for r in manifest.blocks}:
            self._sync_block(project_id, block_hash)
        if is_implied(manifest):
            return True
        tmp = self._tmp_path(project_id)
        try:
            with open(tmp, "wb") as f:
                f.write(orjson.dumps(manifest.to_json()))
                _finish(f, tmp, final, True)
        finally:
            _unlink_quietly(tmp)
        return True

    def put_small_files(self, project_id: str, files: list[tuple[str, bytes]]) -> list[bool]:
        """Store many small files, each as its one block (its manifest is implied: no manifest
        file); returns, per file, whether it was new (the empty file never is: it needs nothing
        stored). Blocking. The caller has checked each file's bytes against its hash (``files``
        is ``(hash, bytes)``) and that each fits in one block.

        Durable as ``put_manifest`` is, but paid per batch, not per file: each temporary file is
        created (``O_EXCL``, names from one random prefix per batch), written and handed to a
        pool that fsyncs and closes it while the next ones are written (the journal commits
        them together); then each is renamed into place, and each directory touched is fsynced
        once. Until its rename nothing is under a final name, so an interrupted batch leaves
        only temporary files (removed here, or by the collector after a crash). Per file:
        create, write, fsync, close, rename."""
        new = [h != EMPTY_HASH and not self._touch_file(project_id, h) for h, _ in files]
        todo = {h: data for (h, data), n in zip(files, new, strict=True) if n}
        if not todo:
            return new
        tmp_dir = self.tmp_dir(project_id)
        os.makedirs(tmp_dir, exist_ok=True)
        prefix = os.path.join(tmp_dir, secrets.token_hex(12))
        blocks: list[tuple[str, str]] = []  # (temporary, final)
        renamed = 0
        open_fds = threading.BoundedSemaphore(MAX_OPEN_SMALL_FILES)
        try:
            with ThreadPoolExecutor(FSYNC_THREADS) as pool:
                syncs = []
                for i, (h, data) in enumerate(todo.items()):
                    blocks.append((f"{prefix}.{i}", self.block_path(project_id, h)))
                    open_fds.acquire()
                    try:
                        fd = os.open(blocks[-1][0],
                                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                    except BaseException:
                        open_fds.release()
                        raise
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view):]
                    except BaseException:
                        _close_released(fd, open_fds)
                        raise
                    syncs.append(pool.submit(_fsync_close, fd, open_fds))
                for done in syncs:
                    done.result()  # every temporary file durable before any is renamed
                dirs: set[str] = set()
                for tmp, final in blocks:
                    parent = os.path.dirname(final)
                    if parent not in dirs:
                        os.makedirs(parent, exist_ok=True)
                        dirs.add(parent)
                    os.replace(tmp, final)
                    renamed += 1
                list(pool.map(_fsync_path, sorted(dirs)))
        finally:
            for tmp, _ in blocks[renamed:]:
                _unlink_quietly(tmp)
        for _, final in blocks:
            self._add_usage(project_id, os.path.getsize(final))
        return new

    def _touch_file(self, project_id: str, file_hash: str) -> bool:
        """Refresh a stored file for the collector (its block; else a manifest file written
        before one-block files had none, or a file stored in several blocks); False if it is
        not stored."""
        return _touch(self.block_path(project_id, file_hash)) \
            or _touch(self.manifest_path(project_id, file_hash))

    async def store_small_files(self, project_id: str,
                                files: list[tuple[str, bytes]]) -> list[bool]:
        """``put_small_files`` on a worker thread, within the quota (``QuotaExceeded``: nothing
        stored), under the collection lock so a collection running now keeps what it touches."""
        size = sum(len(data) for _, data in files)
        await self._reserve(project_id, size)
        try:
            def put() -> list[bool]:
                with self.project_lock(project_id, exclusive=False):
                    return self.put_small_files(project_id, files)
            return await asyncio.to_thread(put)
        finally:
            self._release(project_id, size)

    # -- quota --------------------------------------------------------------------------------------

    def _count(self, project_id: str) -> int:
        total = 0
        blocks = os.path.join(self._project_dir(project_id), "blocks")
        try:
            subdirs = list(os.scandir(blocks))
        except FileNotFoundError:
            return 0
        for sub in subdirs:
            if sub.is_dir():
                with os.scandir(sub.path) as it:
                    total += sum(e.stat().st_size for e in it if e.is_file())
        return total

    async def usage(self, project_id: str) -> int:
        """Bytes of blocks the project stores, plus uploads in progress on this node."""
        lock = self._usage_locks.setdefault(project_id, asyncio.Lock())
        async with lock:
            u = self._usage.get(project_id)
            if u is None or time.monotonic() - u.counted_at > USAGE_TTL_S:
                stored = await asyncio.to_thread(self._count, project_id)
                reserved = u.reserved if u else 0
                u = self._usage[project_id] = _Usage(stored, reserved, time.monotonic())
            return u.stored + u.reserved

    async def _reserve(self, project_id: str, size: int) -> None:
        used = await self.usage(project_id)
        if used + size > self.project_quota:
            raise QuotaExceeded(used, self.project_quota)
        self._usage[project_id].reserved += size

    def _release(self, project_id: str, size: int) -> None:
        u = self._usage.get(project_id)
        if u is not None:
            u.reserved -= size

    def _add_usage(self, project_id: str, size: int) -> None:
        u = self._usage.get(project_id)
        if u is not None:
            u.stored += size


def _finish(f, tmp: str, final: str, durable: bool) -> None:  # noqa: ANN001 - an open file
    f.flush()
    if durable:
        os.fsync(f.fileno())
    os.makedirs(os.path.dirname(final), exist_ok=True)
    os.replace(tmp, final)


def _fsync_close(fd: int, open_fds: threading.BoundedSemaphore) -> None:
    try:
        os.fsync(fd)
    finally:
        _close_released(fd, open_fds)


def _close_released(fd: int, open_fds: threading.BoundedSemaphore) -> None:
    try:
        os.close(fd)
    finally:
        open_fds.release()


def _blocks_digest(blocks: tuple[str, ...]) -> bytes:
    """What a saved state depends on besides its bytes: the block list it was taken over."""
    return hashlib.sha256(b"".join(bytes.fromhex(h) for h in blocks)).digest()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _touch(path: str) -> bool:
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
