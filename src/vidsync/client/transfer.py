"""Moving file content: upload only the blocks the server lacks, download only the ones we lack.

Both directions keep at most ``concurrency`` blocks in flight (memory: that many blocks), read and
hash on a worker thread (hashlib releases the GIL on large buffers), and check every block against
its SHA-256. Uploads are resumable by construction: each run asks the server what it is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

from vidsync.client.errors import ApiError, ContentMismatch
from vidsync.content.blocks import BlockRef, Manifest, block_size_for, read_block

if TYPE_CHECKING:
    from vidsync.client.api import Client

# Blocks hashed before asking the server which it lacks, when no manifest is given: the data is
# held meanwhile, so this bounds memory (but at least one block is always taken).
CHECK_BATCH_BYTES = 32 * 1024 * 1024
CHECK_BATCH_BLOCKS = 256

HaveBlock = Callable[[BlockRef], "bytes | None | Awaitable[bytes | None]"]


class UploadResult(NamedTuple):
    hash: str
    size: int
    uploaded_bytes: int


class DownloadResult(NamedTuple):
    hash: str
    size: int
    downloaded_bytes: int
    reused_bytes: int


class _Pool:
    """Run coroutines with at most ``limit`` at a time; the first failure cancels the rest."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(max(1, limit))
        self._tasks: set[asyncio.Task] = set()
        self._error: BaseException | None = None

    async def submit(self, coro: Awaitable[None]) -> None:
        await self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            coro.close()  # type: ignore[attr-defined]
            raise self._error

        async def run() -> None:
            try:
                await coro
            except BaseException as e:
                if self._error is None:
                    self._error = e
                raise
            finally:
                self._slots.release()

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self) -> None:
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.cancel()

    async def cancel(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- upload -----------------------------------------------------------------------------------------

async def upload_file(client: Client, project_id: str, local_path: str | os.PathLike, *,
                      manifest: Manifest | None = None,
                      on_progress: Callable[[int], None] | None = None) -> UploadResult:
    """See ``Client.upload_file``."""
    sent = 0

    async def put(ref: BlockRef, data: bytes) -> None:
        nonlocal sent
        await client.put_block(project_id, ref.hash, data)
        sent += len(data)
        if on_progress is not None:
            on_progress(len(data))

    pool = _Pool(client.upload_concurrency)
    try:
        if manifest is None:
            manifest = await _hash_and_upload(client, project_id, local_path, pool, put)
        else:
            await _upload_missing(client, project_id, local_path, manifest, pool, put)
        await pool.join()
        try:
            await client.post_manifest(project_id, manifest)
        except ApiError as e:
            if e.code != "missing_blocks":
                raise
            # Blocks vanished between check and manifest (e.g. a concurrent cleanup): once more.
            pool = _Pool(client.upload_concurrency)
            await _upload_missing(client, project_id, local_path, manifest, pool, put)
            await pool.join()
            await client.post_manifest(project_id, manifest)
    finally:
        await pool.cancel()
    return UploadResult(manifest.hash, manifest.size, sent)


async def _upload_missing(client: Client, project_id: str, local_path: str | os.PathLike,
                          manifest: Manifest, pool: _Pool,
                          put: Callable[[BlockRef, bytes], Awaitable[None]]) -> None:
    missing = set(await client.check_blocks(project_id, [b.hash for b in manifest.blocks]))
    for ref in manifest.blocks:
        if ref.hash not in missing:
            continue
        missing.discard(ref.hash)  # a block repeated in the file is sent once
        data = await asyncio.to_thread(read_block, local_path, ref)
        if data is None:
            raise ContentMismatch(f"{local_path} changed since it was hashed (block at {ref.offset})")
        await pool.submit(put(ref, data))


async def _hash_and_upload(client: Client, project_id: str, local_path: str | os.PathLike,
                           pool: _Pool, put: Callable[[BlockRef, bytes], Awaitable[None]]) -> Manifest:
    """Read the file once: hash blocks, ask about them a batch at a time, send the missing."""
    whole = hashlib.sha256()
    refs: list[BlockRef] = []
    sent_hashes: set[str] = set()
    batch: list[tuple[BlockRef, bytes]] = []

    async def flush() -> None:
        missing = set(await client.check_blocks(project_id, [r.hash for r, _ in batch]))
        for ref, data in batch:
            if ref.hash in missing and ref.hash not in sent_hashes:
                sent_hashes.add(ref.hash)
                await pool.submit(put(ref, data))
        batch.clear()

    f = await asyncio.to_thread(open, local_path, "rb")
    with f:
        block_size = block_size_for(os.fstat(f.fileno()).st_size)
        offset = 0

        def read_next() -> tuple[bytes, str]:
            data = f.read(block_size)
            whole.update(data)
            return data, _sha256(data)

        while True:
            data, digest = await asyncio.to_thread(read_next)
            if not data:
                break
            ref = BlockRef(digest, len(data), offset)
            offset += len(data)
            refs.append(ref)
            batch.append((ref, data))
            if len(batch) >= CHECK_BATCH_BLOCKS or len(batch) * block_size >= CHECK_BATCH_BYTES:
                await flush()
    if batch:
        await flush()
    return Manifest(whole.hexdigest(), offset, tuple(refs))


# -- download ---------------------------------------------------------------------------------------

async def download_file(client: Client, project_id: str, manifest: Manifest | str,
                        dest: str | os.PathLike, *, have_block: HaveBlock | None = None,
                        resume: bool = True,
                        on_progress: Callable[[int], None] | None = None) -> DownloadResult:
    """See ``Client.download_file``."""
    if isinstance(manifest, str):
        manifest = await client.manifest(project_id, manifest)
    existed = resume and await asyncio.to_thread(os.path.exists, dest)
    fd = await asyncio.to_thread(
        os.open, dest, os.O_RDWR | os.O_CREAT | (0 if existed else os.O_TRUNC), 0o644)
    downloaded = reused = 0

    async def fetch(ref: BlockRef) -> None:
        nonlocal downloaded
        data = await client.get_block(project_id, ref.hash)

        def check_and_write() -> None:  # off the event loop: about 1 s of hashing per GiB
            if len(data) != ref.size or _sha256(data) != ref.hash:
                raise ContentMismatch(f"block {ref.hash} from the server does not match its hash")
            os.pwrite(fd, data, ref.offset)

        await asyncio.to_thread(check_and_write)
        downloaded += len(data)
        if on_progress is not None:
            on_progress(len(data))

    def local_copy(ref: BlockRef) -> bool:
        data = os.pread(fd, ref.size, ref.offset)
        return len(data) == ref.size and _sha256(data) == ref.hash

    pool = _Pool(client.download_concurrency)
    try:
        await asyncio.to_thread(os.ftruncate, fd, manifest.size)
        for ref in manifest.blocks:
            if existed and await asyncio.to_thread(local_copy, ref):
                reused += ref.size
                continue
            if have_block is not None:
                data = have_block(ref)
                if inspect.isawaitable(data):
                    data = await data
                if data is not None and len(data) == ref.size and _sha256(data) == ref.hash:
                    await asyncio.to_thread(os.pwrite, fd, data, ref.offset)
                    reused += ref.size
                    continue
            await pool.submit(fetch(ref))
        await pool.join()
        await asyncio.to_thread(os.fsync, fd)
    finally:
        await pool.cancel()
        os.close(fd)
    return DownloadResult(manifest.hash, manifest.size, downloaded, reused)
