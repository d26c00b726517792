"""Uploads in progress: the whole-file SHA-256 of a manifest, computed while its blocks land.

An owner posts a file's manifest before its blocks (the answer is 409 ``missing_blocks``, the
list of what to send). From then on this node remembers the manifest and hashes its stored blocks
in file order on a worker thread, each as soon as it and every block before it are stored (from
the bytes just received when they are at hand, else read back from the store). When
the owner posts the manifest again after the last block, the whole-file identity is already
established (or nearly): the manifest is stored without reading the file back. This is the only
extra pass over the bytes, and it runs during the upload instead of after it.

An edit to a big file shares a prefix of blocks with the version before it. While hashing, a
pending upload keeps the SHA-256 state every few MiB (``content/resumable.py``); once its hash is
established they are remembered (``KnownStates``, in memory, bounded) and handed to
``on_verified`` (the server saves them beside the manifest), and the next upload whose blocks
start the same resumes from the last state before its first change: a 1 MiB edit in the middle of
a 1 GiB file hashes half a GiB, not all of it. After a restart the server puts the saved states of
the version an upload replaces back into ``known`` before starting it.

A pending upload is memory on one node: a restart or a post that reaches another node falls back
to hashing the stored blocks then, the same way. The blocks themselves are ordinary
stored blocks (``blocks/``); a pending upload holds no file of its own. It is dropped when its
manifest is stored, when the hash does not match, or after ``IDLE_S`` without a new block.
``blocks_in_flight`` lists the block hashes pending uploads still expect, for whoever collects
unreferenced blocks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vidsync.content.blocks import Manifest
from vidsync.content.resumable import Checkpoints, Recorder, StatesCache, new_sha256

if TYPE_CHECKING:
    from vidsync.content.resumable import Sha256

log = logging.getLogger(__name__)

# A pending upload with no new block for this long is forgotten (a later post hashes from disk).
IDLE_S = 600.0
# At most this many pending uploads per project on one node; the oldest is forgotten first.
MAX_PER_PROJECT = 64
# Hash this many bytes per worker-thread call (fewer thread hops, still a short critical section).
HASH_STEP = 8 * 1024 * 1024
# Bytes of just-stored blocks kept for the in-order hash at most this far ahead of it (a slow
# early block must not make the rest pile up in memory; past it they are read back).
KEEP_AHEAD = 32 * 1024 * 1024
# Blocks stored by another node (shared blob directory) are noticed this often.
POLL_S = 0.5
# Memory for the saved hash states of verified files (about 120 KB per GiB of file with 1 MiB
# blocks, mostly its block list): the least recently used go first.
KNOWN_STATES_BYTES = 64 * 1024 * 1024

# (project_id, block hash) -> the block's bytes read from the store, or None if not stored yet.
ReadBlock = Callable[[str, str], "bytes | None"]
# Progress for announcements: (project_id, pending upload, indexes of the blocks just hashed).
OnProgress = Callable[[str, "Pending", list[int]], None]
# A file's hash established, with the states taken on the way: (project_id, hash, states).
# Blocking (run on a worker thread); an OSError is logged, the upload goes on.
OnVerified = Callable[[str, str, Checkpoints], None]


@dataclass(eq=False)
class Pending:
    """One manifest being uploaded: how far its in-order hash has got."""

    project_id: str
    manifest: Manifest
    path: str | None
    next_index: int = 0
    hashed_bytes: int = 0
    touched: float = field(default_factory=time.monotonic)
    announced_at: float = 0.0  # when members last heard of its progress
    announce_due: bool = False  # a progress message is scheduled
    # The whole-file SHA-256 once every block is hashed; "" if the stored blocks could not be
    # read as listed (the caller then checks them one by one).
    digest: str | None = None
    _hasher: Sha256 = field(default_factory=new_sha256)
    _recorder: Recorder | None = None
    # Bytes of stored blocks not hashed yet, by block hash (see ``PendingUploads.block_stored``).
    _kept: dict[str, list[bytes]] = field(default_factory=dict)
    _first_index: dict[str, int] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task | None = None

    @property
    def complete(self) -> bool:
        return self.digest is not None


class PendingUploads:
    """The pending uploads of this node, advanced as blocks are stored."""

    def __init__(self, read_block: ReadBlock, on_progress: OnProgress | None = None,
                 on_verified: OnVerified | None = None) -> None:
        self._read = read_block
        self.on_progress = on_progress
        self.on_verified = on_verified
        # Keyed by the whole manifest: the same ``hash`` with other blocks is another upload.
        self._by_project: dict[str, dict[Manifest, Pending]] = {}
        self.known = KnownStates()

    def get(self, project_id: str, manifest: Manifest) -> Pending | None:
        return self._by_project.get(project_id, {}).get(manifest)

    def start(self, project_id: str, manifest: Manifest, path: str | None,
              missing: Collection[str] = ()) -> Pending:
        """Remember ``manifest`` (whose blocks are being uploaded) and start hashing it, from
        the saved state of a known version with the same first blocks if there is one (up to
        the first block in ``missing``: those before it are stored, so members may fetch
        them)."""
        uploads = self._by_project.setdefault(project_id, {})
        pending = uploads.get(manifest)
        if pending is not None:
            pending.touched = time.monotonic()
            if path and not pending.path:
                pending.path = path
            return pending
        while len(uploads) >= MAX_PER_PROJECT:
            self.forget(uploads[next(iter(uploads))])
        pending = uploads[manifest] = Pending(project_id, manifest, path)
        self._resume(pending, missing)
        pending._task = asyncio.ensure_future(self._advance(pending))
        return pending

    def _resume(self, p: Pending, missing: Collection[str]) -> None:
        blocks = tuple(ref.hash for ref in p.manifest.blocks)
        limit = next((i for i, h in enumerate(blocks) if h in missing), len(blocks))
        found = self.known.resume_point(p.project_id, blocks, limit)
        if found is None:
            p._recorder = Recorder(len(blocks))
            return
        index, state, base = found
        p._hasher = new_sha256(state)
        p.next_index = index
        p.hashed_bytes = p.manifest.blocks[index].offset
        p._recorder = Recorder(len(blocks), index, p.hashed_bytes, base)

    def block_stored(self, project_id: str, block_hash: str, parts: list[bytes]) -> None:
        """A block of the project was stored (its bytes: ``parts``): pending uploads waiting for
        one look again, and one about to hash that block keeps the bytes, so the block is not
        read back from the store."""
        for pending in self._by_project.get(project_id, {}).values():
            pending.touched = time.monotonic()
            _keep(pending, block_hash, parts)
            pending._wake.set()

    async def digest(self, pending: Pending, timeout: float) -> str | None:
        """The whole-file SHA-256 once every block is hashed; None if not done within
        ``timeout`` (e.g. a block is still missing)."""
        try:
            await asyncio.wait_for(pending._done.wait(), timeout)
        except TimeoutError:
            return None
        return pending.digest

    def forget(self, pending: Pending) -> None:
        uploads = self._by_project.get(pending.project_id, {})
        if uploads.get(pending.manifest) is pending:
            del uploads[pending.manifest]
            if not uploads:
                self._by_project.pop(pending.project_id, None)
        if pending._task is not None and pending._task is not asyncio.current_task():
            pending._task.cancel()

    def blocks_in_flight(self, project_id: str) -> set[str]:
        """Hashes of the blocks this node's pending uploads of the project still expect."""
        return {ref.hash for p in self._by_project.get(project_id, {}).values()
                for ref in p.manifest.blocks[p.next_index:]}

    async def close(self) -> None:
        for uploads in list(self._by_project.values()):
            for pending in list(uploads.values()):
                self.forget(pending)

    async def _advance(self, p: Pending) -> None:
        """Hash stored blocks in order until the end, waiting for each missing one."""
        blocks = p.manifest.blocks
        try:
            while p.next_index < len(blocks):
                p._wake.clear()
                hashed = await asyncio.to_thread(self._hash_some, p)
                if hashed:
                    if self.on_progress is not None:
                        self.on_progress(p.project_id, p, hashed)
                    continue
                if time.monotonic() - p.touched > IDLE_S:
                    self.forget(p)
                    return
                try:
                    await asyncio.wait_for(p._wake.wait(), POLL_S)
                except TimeoutError:
                    pass
            p.digest = p._hasher.hexdigest()
            if p.digest == p.manifest.hash and p._recorder is not None:
                checkpoints = p._recorder.checkpoints(tuple(r.hash for r in blocks))
                if checkpoints is not None:
                    self.known.add(p.project_id, p.manifest.hash, checkpoints)
                    if self.on_verified is not None:
                        try:
                            await asyncio.to_thread(self.on_verified, p.project_id,
                                                    p.manifest.hash, checkpoints)
                        except OSError as e:  # only a cache: the next edit hashes more
                            log.warning("cannot save the hash states of %s: %s",
                                        p.manifest.hash, e)
            p._done.set()
        except OSError:
            p.digest = ""
            p._done.set()

    def _hash_some(self, p: Pending) -> list[int]:
        """Hash the next stored blocks in order, about ``HASH_STEP`` bytes (blocking)."""
        done: list[int] = []
        size = 0
        blocks = p.manifest.blocks
        while p.next_index < len(blocks) and size < HASH_STEP:
            ref = blocks[p.next_index]
            parts = p._kept.pop(ref.hash, None)
            if parts is None:
                data = self._read(p.project_id, ref.hash)
                if data is None:
                    break
                parts = [data]
            length = sum(len(part) for part in parts)
            if length != ref.size:
                raise OSError(f"stored block {ref.hash} has {length} bytes, not {ref.size}")
            for part in parts:
                p._hasher.update(part)
            if p._recorder is not None:
                p._recorder.block_done(p._hasher)
            done.append(p.next_index)
            p.next_index += 1
            p.hashed_bytes += length
            size += length
        return done


def _keep(p: Pending, block_hash: str, parts: list[bytes]) -> None:
    """Keep a stored block's bytes for ``p``'s hash if it will need them soon."""
    if p._first_index is None:
        p._first_index = {}
        for i, ref in enumerate(p.manifest.blocks):
            p._first_index.setdefault(ref.hash, i)
    index = p._first_index.get(block_hash)
    blocks = p.manifest.blocks
    if index is not None and p.next_index <= index < len(blocks) \
            and blocks[index].offset - blocks[p.next_index].offset < KEEP_AHEAD:
        p._kept[block_hash] = parts


class KnownStates:
    """Saved SHA-256 states of recently verified files, by project; bounded by memory."""

    # Versions looked at per upload, at most (files with the same first block are few).
    MAX_CANDIDATES = 16

    def __init__(self, max_bytes: int = KNOWN_STATES_BYTES) -> None:
        self._cache: StatesCache[tuple[str, str]] = StatesCache(max_bytes)
        # (project, first block hash) -> file hashes: where an edited version looks
        self._by_first: dict[tuple[str, str], set[str]] = {}

    def knows_start(self, project_id: str, manifest: Manifest) -> bool:
        """Whether states of some version starting with ``manifest``'s first block are held."""
        return bool(manifest.blocks) and (project_id, manifest.blocks[0].hash) in self._by_first

    def add(self, project_id: str, file_hash: str, checkpoints: Checkpoints) -> None:
        if (project_id, file_hash) in self._cache:
            return
        self._by_first.setdefault((project_id, checkpoints.blocks[0]), set()).add(file_hash)
        for (pid, h), old in self._cache.put((project_id, file_hash), checkpoints):
            first = self._by_first[(pid, old.blocks[0])]
            first.discard(h)
            if not first:
                del self._by_first[(pid, old.blocks[0])]

    def resume_point(self, project_id: str, blocks: tuple[str, ...],
                     limit: int) -> tuple[int, bytes, Checkpoints] | None:
        """The furthest saved state that holds for a file of ``blocks`` (at or before block
        ``limit``), with the checkpoints it came from."""
        if not blocks:
            return None
        best = None
        for file_hash in list(self._by_first.get((project_id, blocks[0]), ()))[
                :self.MAX_CANDIDATES]:
            checkpoints = self._cache.get((project_id, file_hash))
            point = checkpoints.resume_point(blocks, limit) if checkpoints else None
            if point is not None and (best is None or point[0] > best[0]):
                best = (*point, checkpoints)
        return best
