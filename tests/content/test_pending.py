"""The in-order hash of an upload in progress: from the bytes just stored when they are at hand,
read back from the store otherwise, and the same digest either way."""

from __future__ import annotations

import asyncio
import hashlib
import os

from vidsync.content import pending as pending_mod
from vidsync.content.blocks import BlockRef, Manifest
from vidsync.content.pending import PendingUploads


def _upload(n: int, size: int) -> tuple[list[bytes], Manifest]:
    blocks = [os.urandom(size) for _ in range(n)]
    refs = tuple(BlockRef(hashlib.sha256(b).hexdigest(), size, i * size)
                 for i, b in enumerate(blocks))
    return blocks, Manifest(hashlib.sha256(b"".join(blocks)).hexdigest(), n * size, refs)


async def _run(order: list[int], keep_ahead: int) -> tuple[bool, int]:
    """Store the blocks in ``order``; (digest right, blocks read back from the store)."""
    blocks, manifest = _upload(8, 4096)
    store: dict[str, bytes] = {}
    read_back = []

    def read(_project: str, block_hash: str) -> bytes | None:
        data = store.get(block_hash)
        if data is not None:
            read_back.append(block_hash)
        return data

    pending_mod.KEEP_AHEAD, saved = keep_ahead, pending_mod.KEEP_AHEAD
    try:
        uploads = PendingUploads(read)
        p = uploads.start("p", manifest, "clip.mov")
        for i in order:
            store[manifest.blocks[i].hash] = blocks[i]
            uploads.block_stored("p", manifest.blocks[i].hash, [blocks[i][:100], blocks[i][100:]])
            await asyncio.sleep(0.01)
        digest = await uploads.digest(p, 5)
        await uploads.close()
    finally:
        pending_mod.KEEP_AHEAD = saved
    return digest == manifest.hash, len(read_back)


def test_blocks_stored_out_of_order_are_hashed_from_memory() -> None:
    ok, read_back = asyncio.run(_run([1, 0, 3, 2, 5, 4, 7, 6], keep_ahead=1 << 20))
    assert ok
    assert read_back == 0


def test_blocks_far_ahead_are_read_back_not_kept() -> None:
    # Block 0 comes last: with room for two blocks ahead, the ones further away are not kept
    # in memory and are read back from the store once block 0 lands.
    ok, read_back = asyncio.run(_run([1, 2, 3, 4, 5, 6, 7, 0], keep_ahead=2 * 4096))
    assert ok
    assert read_back == 6
