"""Limits of the small-file batch routes (``content-batch``), shared by server and client, and
how a client packs files into batches that fit them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from vidsync.content.blocks import MIN_BLOCK_SIZE

# Files per batch, each way.
MAX_BATCH_FILES = 1000
# A file in a batch fits in one block, as split_file cuts it (128 KiB).
MAX_BATCH_FILE_SIZE = MIN_BLOCK_SIZE
# Content per batch (decoded), each way.
MAX_BATCH_BYTES = 16 * 1024 * 1024
# A request body: room for the content in base64 (4/3) plus each file's hash and keys.
MAX_BATCH_BODY = 24 * 1024 * 1024

T = TypeVar("T")


def pack(items: Iterable[tuple[T, int]], max_files: int = MAX_BATCH_FILES,
         max_bytes: int = MAX_BATCH_BYTES) -> Iterator[list[T]]:
    """Cut ``(item, size)`` pairs, in order, into batches within the limits. Every size must
    be at most ``MAX_BATCH_FILE_SIZE``."""
    batch: list[T] = []
    total = 0
    for item, size in items:
        if batch and (len(batch) >= max_files or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size
    if batch:
        yield batch
