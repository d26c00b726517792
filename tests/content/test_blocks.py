"""Block sizes, splitting and manifest parsing: the rules the owner agent and the server share."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import pytest

from vidsync.content.blocks import (
    EMPTY_HASH,
    MAX_BLOCK_SIZE,
    MIN_BLOCK_SIZE,
    Manifest,
    block_size_for,
    iter_blocks,
    read_block,
    read_small,
    split_file,
)

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(("size", "block"), [
    (0, 128 * KiB), (1, 128 * KiB), (2000 * 128 * KiB, 128 * KiB),
    (2000 * 128 * KiB + 1, 256 * KiB), (1 * GiB, 1 * MiB), (4 * GiB, 4 * MiB),
    (2000 * 16 * MiB, 16 * MiB), (100 * GiB, 16 * MiB),
])
def test_block_size_for(size: int, block: int) -> None:
    assert block_size_for(size) == block
    assert MIN_BLOCK_SIZE <= block <= MAX_BLOCK_SIZE
    if block < MAX_BLOCK_SIZE:
        assert -(-size // block) <= 2000
    if block > MIN_BLOCK_SIZE:  # the smallest that works: half of it gives too many blocks
        assert -(-size // (block // 2)) > 2000


def test_split_file_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 2000 + b"tail"  # 512004 bytes: 3 full blocks and a short one
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    m = split_file(path)
    assert m.hash == hashlib.sha256(data).hexdigest() and m.size == len(data)
    assert [b.size for b in m.blocks] == [128 * KiB] * 3 + [len(data) - 3 * 128 * KiB]
    for ref in m.blocks:
        assert ref.hash == hashlib.sha256(data[ref.offset:ref.offset + ref.size]).hexdigest()
        assert read_block(path, ref) == data[ref.offset:ref.offset + ref.size]
    assert Manifest.from_json(m.to_json()) == m
    path.write_bytes(b"x" + data[1:])
    assert read_block(path, m.blocks[0]) is None and read_block(path, m.blocks[1]) is not None


@pytest.mark.parametrize("size", [0, 1, 2048, 128 * KiB, 128 * KiB + 1])
def test_a_small_file_is_read_whole_into_the_same_manifest(tmp_path: Path, size: int) -> None:
    """``read_small`` (one read, one hash) gives what the streaming split gives, and the bytes;
    a file past one block is left to the streaming split."""
    data = bytes(i % 251 for i in range(size))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    refs = tuple(ref for ref, _ in iter_blocks(path))
    streamed = Manifest(hashlib.sha256(data).hexdigest(), size, refs)
    small = read_small(path)
    if size > MIN_BLOCK_SIZE:
        assert small is None and len(split_file(path).blocks) == 2
        return
    assert small == (streamed, data)
    assert split_file(path) == streamed


def test_split_file_streams(tmp_path: Path) -> None:
    """A 64 MiB file is hashed holding a few blocks (128 KiB... 16 MiB each: those the two
    hashing threads have read ahead of the whole-file hash), not the file."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
    tracemalloc.start()
    try:
        m = split_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert m.size == 64 * MiB and len(m.blocks) == 64 * MiB // block_size_for(64 * MiB)
    assert peak < 6 * block_size_for(64 * MiB), peak


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    m = split_file(path)
    assert (m.hash, m.size, m.blocks) == (EMPTY_HASH, 0, ())
    assert Manifest.from_json({"hash": EMPTY_HASH, "size": 0, "blocks": []}) == m


H = "a" * 64


@pytest.mark.parametrize(("raw", "why"), [
    ([], "object"),
    ({"hash": "A" * 64, "size": 1, "blocks": [{"hash": H, "size": 1}]}, "'hash'"),
    ({"hash": H, "size": -1, "blocks": []}, "'size'"),
    ({"hash": H, "size": True, "blocks": []}, "'size'"),
    ({"hash": H, "size": 1, "blocks": {}}, "'blocks'"),
    ({"hash": H, "size": 2, "blocks": [{"hash": H, "size": 1}]}, "add up"),
    ({"hash": H, "size": 0, "blocks": [{"hash": H, "size": 0}]}, "blocks[0]"),
    ({"hash": H, "size": MAX_BLOCK_SIZE + 1, "blocks": [{"hash": H, "size": MAX_BLOCK_SIZE + 1}]},
     "blocks[0]"),
    ({"hash": H, "size": 1, "blocks": [{"hash": "x", "size": 1}]}, "blocks[0]"),
    ({"hash": H, "size": 0, "blocks": []}, "empty file"),
    ({"hash": H, "size": 3000, "blocks": [{"hash": H, "size": 1}] * 3000}, "too many"),
])
def test_bad_manifests(raw: object, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")):
        Manifest.from_json(raw)
