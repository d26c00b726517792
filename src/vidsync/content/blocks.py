"""Blocks and manifests: a file is the concatenation of its blocks, each addressed by SHA-256.

The block size is chosen per file like Syncthing's, so a file of any size has at most
``MAX_BLOCKS_PER_FILE`` blocks (a manifest stays small) while small files keep small blocks (an edit
re-sends little). Splitting streams the file: a multi-GB file is never held in memory.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vidsync.jsonint import json_int

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
    """Hash the file at ``path`` into its manifest in one streaming read (memory: a few blocks).

    Block hashes are computed here while the whole-file SHA-256 runs on a second thread over the
    same buffers (hashlib releases the GIL), so two cores hash a file in the time of one pass.
    The size is what was read, not what ``stat`` said before: a file that grows or shrinks while
    it is read gets a manifest that matches the bytes that were hashed."""
    small = read_small(path)
    if small is not None:
        if on_bytes is not None and small[1]:
            on_bytes(len(small[1]))
        return small[0]
    whole = hashlib.sha256()
    refs = []
    with ThreadPoolExecutor(1, thread_name_prefix="sha256") as pool:
        previous = None
        for ref, data in iter_blocks(path):
            if previous is not None:
                previous.result()  # at most one block ahead: bounded memory
            previous = pool.submit(whole.update, data)
            refs.append(ref)
            if on_bytes is not None:
                on_bytes(len(data))
        if previous is not None:
            previous.result()
    size = sum(r.size for r in refs)
    return Manifest(whole.hexdigest(), size, tuple(refs))


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
