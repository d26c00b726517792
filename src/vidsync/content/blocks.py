"""Blocks and manifests: a file is the concatenation of its blocks, each addressed by SHA-256.

The block size is chosen per file like Syncthing's, so a file of any size has at most
``MAX_BLOCKS_PER_FILE`` blocks (a manifest stays small) while small files keep small blocks (an edit
re-sends little). Splitting streams the file: a multi-GB file is never held in memory.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vidsync.content import resumable
from vidsync.content.resumable import Checkpoints, Recorder, new_sha256
from vidsync.jsonint import json_int

if TYPE_CHECKING:
    from vidsync.content.resumable import Sha256

MIN_BLOCK_SIZE = 128 * 1024
MAX_BLOCK_SIZE = 16 * 1024 * 1024
MAX_BLOCKS_PER_FILE = 2000
# sha256 of b"": the hash of every empty file.
EMPTY_HASH = hashlib.sha256(b"").hexdigest()
HASH_RE = re.compile(r"[0-9a-f]{64}")
# Reads while hashing: big enough to keep syscalls rare, small enough to stream.
READ_CHUNK = 1024 * 1024


def block_size_for(size: int) -> int:
    """The smallest power of two from 128 KiB to 16 MiB that cuts ``size`` bytes into at most 2000
    blocks (16 MiB past 32 GiB, where files get more than 2000 blocks)."""
    if size < 0:
        raise ValueError("size must be >= 0")
    block = MIN_BLOCK_SIZE
    while block < MAX_BLOCK_SIZE and -(-size // block) > MAX_BLOCKS_PER_FILE:
        block *= 2
    return block


def is_hash(value: object) -> bool:
    return isinstance(value, str) and HASH_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class BlockRef:
    """One block of a file: its SHA-256, its length, and where it starts in the file."""

    hash: str
    size: int
    offset: int = 0

    def to_json(self) -> dict:
        return {"hash": self.hash, "size": self.size}


class InconsistentManifest(ValueError):
    """A manifest of the right shape whose parts do not add up (a JSON schema cannot say this)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """A file as its blocks, in order: ``hash`` is the whole file's SHA-256, ``size`` its length."""

    hash: str
    size: int
    blocks: tuple[BlockRef, ...]

    def to_json(self) -> dict:
        return {"hash": self.hash, "size": self.size, "blocks": [b.to_json() for b in self.blocks]}

    @classmethod
    def from_json(cls, raw: object) -> Manifest:
        """Parse ``{hash, size, blocks: [{hash, size}]}``; ``ValueError`` says what is wrong
        (``InconsistentManifest`` when the shape is right but the numbers disagree).

        Checks the shape only (block sizes add up to ``size``, none above ``MAX_BLOCK_SIZE``); that
        the blocks exist and hash to ``hash`` is the server's job when it stores the manifest."""
        if not isinstance(raw, dict):
            raise ValueError("a manifest must be an object")
        digest, size, blocks = raw.get("hash"), json_int(raw.get("size")), raw.get("blocks")
        if not is_hash(digest):
            raise ValueError("'hash' must be 64 lowercase hex digits")
        if size is None or size < 0:
            raise ValueError("'size' must be a non-negative integer")
        if not isinstance(blocks, list):
            raise ValueError("'blocks' must be an array")
        if len(blocks) > max(MAX_BLOCKS_PER_FILE, -(-size // MIN_BLOCK_SIZE)):
            raise InconsistentManifest("too many blocks for the file's size")
        refs, offset = [], 0
        for i, b in enumerate(blocks):
            if not isinstance(b, dict) or not is_hash(b.get("hash")):
                raise ValueError(f"blocks[{i}]: 'hash' must be 64 lowercase hex digits")
            bsize = json_int(b.get("size"))
            if bsize is None or not 0 < bsize <= MAX_BLOCK_SIZE:
                raise ValueError(f"blocks[{i}]: 'size' must be an integer from 1 to {MAX_BLOCK_SIZE}")
            refs.append(BlockRef(b["hash"], bsize, offset))
            offset += bsize
        if offset != size:
            raise InconsistentManifest(f"the blocks add up to {offset} bytes, not 'size' ({size})")
        if size == 0 and digest != EMPTY_HASH:
            raise InconsistentManifest("an empty file's hash is the SHA-256 of no bytes")
        return cls(digest, size, tuple(refs))


def iter_blocks(path: str | os.PathLike, block_size: int | None = None) -> Iterator[tuple[BlockRef, bytes]]:
    """Each block of the file at ``path`` with its bytes, read one block at a time.

    ``block_size`` defaults to ``block_size_for`` the file's size when it is opened."""
    with open(path, "rb") as f:
        if block_size is None:
            block_size = block_size_for(os.fstat(f.fileno()).st_size)
        offset = 0
        while data := f.read(block_size):
            yield BlockRef(hashlib.sha256(data).hexdigest(), len(data), offset), data
            offset += len(data)


def split_file(path: str | os.PathLike,
               on_bytes: Callable[[int], None] | None = None) -> Manifest:
    """Hash the file at ``path`` into its manifest (``hash_file`` without a previous version)."""
    return hash_file(path, on_bytes)[0]


def hash_file(path: str | os.PathLike, on_bytes: Callable[[int], None] | None = None,
              previous: Checkpoints | None = None) -> tuple[Manifest, Checkpoints | None]:
    """Hash the file at ``path`` into its manifest, and the hash states to give as ``previous``
    when the next version is hashed (None for a file too small to keep any).

    Two threads hash blocks while this one feeds them, in order, to the whole-file SHA-256; each
    byte is read once, and at most a few blocks are held. With ``previous`` (the states of an
    earlier version), the whole-file hash skips the blocks both versions share at the start: it
    resumes from the last state saved before the first changed block. A file that changes size
    while it is read gets a manifest of what was read (``split_sequential``)."""
    small = read_small(path)
    if small is not None:
        if on_bytes is not None and small[1]:
            on_bytes(len(small[1]))
        return small[0], None
    if not resumable.AVAILABLE:  # states cannot be resumed here (nor were any saved)
        previous = None
    with open(path, "rb", buffering=0) as f:
        hashed = _ParallelHash(f.fileno(), os.fstat(f.fileno()).st_size, on_bytes, previous)
        result = hashed.run()
    if result is None:  # it changed size while we read it
        return split_sequential(path, on_bytes), None
    return result


class _ParallelHash:
    """Block hashes on ``WORKERS`` threads, the whole-file hash in order on the caller's."""

    WORKERS = 2
    AHEAD = 3  # blocks read but not yet fed to the whole-file hash, at most

    def __init__(self, fd: int, size: int, on_bytes: Callable[[int], None] | None,
                 previous: Checkpoints | None) -> None:
        self.fd = fd
        self.size = size
        self.block_size = block_size_for(size)
        self.count = -(-size // self.block_size)
        self.on_bytes = on_bytes
        self.previous = previous
        self.refs: list[BlockRef | None] = [None] * self.count
        # Reads go into a few buffers used again and again: a fresh 1 MiB ``bytes`` per block,
        # allocated on one thread and freed on another, cost 35,000-70,000 page faults and
        # 0.3 s of system time per GiB here.
        self.free = [bytearray(self.block_size) for _ in range(self.AHEAD + 1)]
        self.data: dict[int, memoryview] = {}
        self.cond = threading.Condition()
        self.claimed = 0  # the next block a worker takes
        self.fed = 0  # the next block the whole-file hash takes
        self.short = False  # a read came back short: the file shrank
        self.error: BaseException | None = None

    def run(self) -> tuple[Manifest, Checkpoints | None] | None:
        workers = [threading.Thread(target=self._work, name="sha256-blocks", daemon=True)
                   for _ in range(self.WORKERS)]
        for w in workers:
            w.start()
        try:
            whole, recorder = self._feed()
        finally:
            with self.cond:
                self.claimed = self.count  # nothing more to take
                self.cond.notify_all()
            for w in workers:
                w.join()
        if self.error is not None:
            raise self.error
        if self.short or whole is None or os.fstat(self.fd).st_size != self.size:
            return None
        refs = tuple(self.refs)
        checkpoints = recorder.checkpoints(tuple(r.hash for r in refs))
        return Manifest(whole.hexdigest(), self.size, refs), checkpoints

    def _work(self) -> None:
        try:
            while True:
                with self.cond:
                    while self.claimed < self.count and (
                            self.claimed >= self.fed + self.AHEAD or not self.free):
                        self.cond.wait()
                    index = self.claimed
                    if index >= self.count:
                        return
                    self.claimed += 1
                    buf = self.free.pop()
                offset = index * self.block_size
                want = min(self.block_size, self.size - offset)
                view = memoryview(buf)[:want]
                got = os.preadv(self.fd, [view], offset)
                ref = BlockRef(hashlib.sha256(view[:got]).hexdigest(), got, offset)
                with self.cond:
                    if got != want:
                        self.short = True
                    self.refs[index] = ref
                    self.data[index] = view[:got]
                    if self.on_bytes is not None:
                        self.on_bytes(got)
                    self.cond.notify_all()
                del view  # held by ``self.data`` now; not by this thread while it waits
        except BaseException as e:  # noqa: BLE001 - raised again by run()
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def _give_back(self, view: memoryview) -> None:
        """A block's buffer, hashed: free for the next read."""
        buf = view.obj
        view.release()
        with self.cond:
            self.free.append(buf)
            self.cond.notify_all()

    def _take(self, index: int) -> tuple[BlockRef, memoryview] | None:
        """Block ``index`` once read (its bytes handed over), or None if reading failed."""
        with self.cond:
            while self.refs[index] is None and self.error is None and not self.short:
                self.cond.wait()
            if self.error is not None or self.short:
                return None
            self.fed = index + 1
            self.cond.notify_all()
            return self.refs[index], self.data.pop(index)

    def _feed(self) -> tuple[Sha256 | None, Recorder]:
        whole = new_sha256()
        recorder = Recorder(self.count)
        index = 0
        if self.previous is not None:  # walk the shared blocks, then resume before the first change
            old = self.previous.blocks
            while index < self.count:
                taken = self._take(index)
                if taken is None:
                    return None, recorder
                if index >= len(old) or taken[0].hash != old[index]:
                    self.data[index] = taken[1]  # fed below, after the blocks before it
                    break
                self._give_back(taken[1])
                index += 1
            start, state = self.previous.resume_point(old[:index], index) or (0, None)
            whole = new_sha256(state)
            recorder = Recorder(self.count, start, start * self.block_size,
                                self.previous if state else None)
            for i in range(start, index):  # read again: the shared blocks after that state
                data = os.pread(self.fd, self.block_size, i * self.block_size)
                if hashlib.sha256(data).hexdigest() != self.refs[i].hash:
                    self.short = True  # changed under us: hashed again from the start
                    return None, recorder
                whole.update(data)
                recorder.block_done(whole)
            if index < self.count:
                view = self.data.pop(index)
                whole.update(view)
                self._give_back(view)
                recorder.block_done(whole)
                index += 1
        for i in range(index, self.count):
            taken = self._take(i)
            if taken is None:
                return None, recorder
            whole.update(taken[1])
            self._give_back(taken[1])
            del taken
            recorder.block_done(whole)
        return whole, recorder


def split_sequential(path: str | os.PathLike,
                     on_bytes: Callable[[int], None] | None = None) -> Manifest:
    """Hash the file at ``path`` in one streaming read, its size what was read (not what
    ``stat`` said before): the fallback for a file that grows or shrinks while it is hashed."""
    whole = hashlib.sha256()
    refs = []
    for ref, data in iter_blocks(path):
        whole.update(data)
        refs.append(ref)
        if on_bytes is not None:
            on_bytes(len(data))
    return Manifest(whole.hexdigest(), sum(r.size for r in refs), tuple(refs))


def read_small(path: str | os.PathLike) -> tuple[Manifest, bytes] | None:
    """The manifest and bytes of a file that fits in one block (what ``split_file`` makes of it),
    in one read and one hash; None if it is larger. For an image sequence of small files this
    is most of the cost of hashing: no second hashing thread, no second read to upload it."""
    with open(path, "rb", buffering=0) as f:
        if os.fstat(f.fileno()).st_size > MIN_BLOCK_SIZE:
            return None
        parts, size = [], 0
        while size <= MIN_BLOCK_SIZE and (part := f.read(MIN_BLOCK_SIZE + 1 - size)):
            parts.append(part)
            size += len(part)
        if size > MIN_BLOCK_SIZE:  # grew since the fstat
            return None
    data = b"".join(parts)
    digest = hashlib.sha256(data).hexdigest()
    return Manifest(digest, len(data), (BlockRef(digest, len(data)),) if data else ()), data


def read_block(path: str | os.PathLike, ref: BlockRef) -> bytes | None:
    """The block's bytes read back from the file, or None if they no longer hash to ``ref.hash``
    (the file changed since it was split)."""
    with open(path, "rb") as f:
        f.seek(ref.offset)
        data = f.read(ref.size)
    if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.hash:
        return None
    return data
