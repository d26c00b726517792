"""Moving file content: upload only the blocks the server lacks, download only the ones we lack.

Both directions keep several blocks in flight, bounded by ``IN_FLIGHT_BYTES`` (as Syncthing's
pending-request budget) and by the client's concurrency, over the session's kept-alive
connections. Reading, hashing and writing run on worker threads (hashlib releases the GIL on
large buffers), and each byte is hashed once per pass: the server checks every uploaded block, and
a download checks every block it receives. Uploads are resumable by construction: each run asks
the server what it is missing.

An upload posts the manifest first: the server answers with the blocks it lacks, remembers the
upload, hashes the blocks in order as they land, and tells members which are ready
(``project:upload``), so they can fetch while the owner is still sending.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

from vidsync.client.errors import ApiError, ContentMismatch
from vidsync.content.blocks import BlockRef, Manifest, split_file
from vidsync.writeback import start_writeback

if TYPE_CHECKING:
    from vidsync.client.api import Client

# Bytes of block requests in flight per file, each way.
IN_FLIGHT_BYTES = 32 * 1024 * 1024
# Posting the manifest and sending what it says is missing, at most this many rounds without
# progress (blocks can vanish meanwhile, e.g. a crash-damaged block the server deleted).
MAX_ROUNDS = 5

HaveBlock = Callable[[BlockRef], "bytes | None | Awaitable[bytes | None]"]
# place_block(ref, fd): put the block's bytes at ``ref.offset`` in ``fd`` from a local source the
# caller vouches for (e.g. a reflink from the verified previous version); True if it did.
# Blocking: called on a worker thread.
PlaceBlock = Callable[[BlockRef, int], bool]


class UploadResult(NamedTuple):
    hash: str
    size: int
    uploaded_bytes: int


class DownloadResult(NamedTuple):
    hash: str
    size: int
    downloaded_bytes: int
    reused_bytes: int
    # SHA-256 of the bytes written to ``dest``, read back in order while the download ran.
    content_hash: str | None = None


class _Window:
    """Run coroutines with at most ``limit`` at a time and about ``max_bytes`` in flight (one is
    always let through); the first failure is raised by the next ``submit`` or ``join``."""

    def __init__(self, limit: int, max_bytes: int = IN_FLIGHT_BYTES) -> None:
        self.limit = max(1, limit)
        self.max_bytes = max_bytes
        self._bytes = 0
        self._running = 0  # counted here: a task leaves ``_tasks`` only a loop turn after it ends
        self._tasks: set[asyncio.Task] = set()
        self._changed = asyncio.Event()
        self._error: BaseException | None = None

    async def submit(self, size: int, coro: Awaitable[None]) -> None:
        while self._error is None and self._running and (
                self._running >= self.limit or self._bytes + size > self.max_bytes):
            self._changed.clear()
            await self._changed.wait()
        if self._error is not None:
            coro.close()  # type: ignore[attr-defined]
            raise self._error
        self._bytes += size
        self._running += 1

        async def run() -> None:
            try:
                await coro
            except BaseException as e:
                if self._error is None:
                    self._error = e
                raise
            finally:
                self._bytes -= size
                self._running -= 1
                self._changed.set()

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
                      manifest: Manifest | None = None, path: str | None = None,
                      on_progress: Callable[[int], None] | None = None) -> UploadResult:
    """See ``Client.upload_file``."""
    if manifest is None:
        manifest = await asyncio.to_thread(split_file, local_path)
    sent = 0
    stalled = 0
    fd = await asyncio.to_thread(os.open, local_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            try:
                await client.post_manifest(project_id, manifest, path=path)
                return UploadResult(manifest.hash, manifest.size, sent)
            except ApiError as e:
                if e.code != "missing_blocks":
                    raise
                missing = set(e.details.get("missing") or ())
            before = sent
            sent += await _send_blocks(client, project_id, fd, manifest, missing, on_progress)
            stalled = 0 if sent > before else stalled + 1
            if stalled >= MAX_ROUNDS:
                raise ApiError(409, "missing_blocks", "the server keeps asking for blocks it "
                               "was sent", {"missing": sorted(missing)})
    finally:
        os.close(fd)


async def _send_blocks(client: Client, project_id: str, fd: int, manifest: Manifest,
                       missing: set[str], on_progress: Callable[[int], None] | None) -> int:
    """Send the listed blocks in file order, several in flight; returns the bytes sent."""
    sent = 0
    # Blocks are read into buffers used again once their request is answered: a fresh bytes
    # per block, read on a worker thread and freed on the event loop's, cost 36,000-50,000 page
    # faults per GiB uploaded (see ``hash_file``).
    largest = max((ref.size for ref in manifest.blocks), default=0)
    buffers: list[bytearray] = []

    def read(ref: BlockRef) -> memoryview:
        view = memoryview(buffers.pop() if buffers else bytearray(largest))[:ref.size]
        if os.preadv(fd, [view], ref.offset) != ref.size:
            raise ContentMismatch(f"the file is shorter than when it was hashed "
                                  f"(block at {ref.offset})")
        return view

    async def put(ref: BlockRef, data: memoryview) -> None:
        nonlocal sent
        try:
            await client.put_block(project_id, ref.hash, data)
        except ApiError as e:
            if e.code == "hash_mismatch":  # the file changed since it was hashed
                raise ContentMismatch(f"the file changed since it was hashed (block at "
                                      f"{ref.offset})") from None
            raise
        buffers.append(data.obj)  # the request is over: its body is no longer read
        sent += len(data)
        if on_progress is not None:
            on_progress(len(data))

    window = _Window(client.upload_concurrency)
    try:
        for ref in manifest.blocks:
            if ref.hash not in missing:
                continue
            missing.discard(ref.hash)  # a block repeated in the file is sent once
            data = await asyncio.to_thread(read, ref)
            await window.submit(ref.size, put(ref, data))
        await window.join()
    finally:
        await window.cancel()
    return sent


# -- download ---------------------------------------------------------------------------------------

async def download_file(client: Client, project_id: str, manifest: Manifest | str,
                        dest: str | os.PathLike, *, have_block: HaveBlock | None = None,
                        place_block: PlaceBlock | None = None, resume: bool = True,
                        done: set[int] | None = None,
                        wait_for_block: Callable[[int], Awaitable[None]] | None = None,
                        on_progress: Callable[[int], None] | None = None) -> DownloadResult:
    """See ``Client.download_file``."""
    if isinstance(manifest, str):
        manifest = await client.manifest(project_id, manifest)
    existed = resume and await asyncio.to_thread(os.path.exists, dest)
    fd = await asyncio.to_thread(
        os.open, dest, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (0 if existed else os.O_TRUNC),
        0o644)
    done = set() if done is None else done
    downloaded = reused = 0
    hasher = _InOrderHash(fd, manifest)
    # One writer at a time: ext4 serializes buffered writes to a file on its inode lock anyway,
    # and threads racing for it spin on the CPU (7 % of a download's CPU in a perf profile).
    write_lock = threading.Lock()

    def mark(index: int) -> None:
        done.add(index)
        hasher.ready.set()

    async def fetch(index: int, ref: BlockRef) -> None:
        nonlocal downloaded
        data = await client.get_block(project_id, ref.hash)

        def check_and_write() -> None:  # off the event loop: about 0.5 s of hashing per GiB
            if len(data) != ref.size or _sha256(data) != ref.hash:
                raise ContentMismatch(f"block {ref.hash} from the server does not match its hash")
            with write_lock:
                os.pwrite(fd, data, ref.offset)
                start_writeback(fd, ref.offset, ref.size)  # the final fsync finds it on disk

        await asyncio.to_thread(check_and_write)
        hasher.keep(index, data)
        mark(index)
        downloaded += len(data)
        if on_progress is not None:
            on_progress(len(data))

    def local_copy(ref: BlockRef) -> bool:
        data = os.pread(fd, ref.size, ref.offset)
        return len(data) == ref.size and _sha256(data) == ref.hash

    window = _Window(client.download_concurrency)
    hashing = asyncio.ensure_future(hasher.run(done))
    try:
        size = await asyncio.to_thread(os.fstat, fd)
        if size.st_size != manifest.size:
            await asyncio.to_thread(os.ftruncate, fd, manifest.size)
        for index, ref in enumerate(manifest.blocks):
            if index in done:
                reused += ref.size
                continue
            if existed and await asyncio.to_thread(local_copy, ref):
                mark(index)
                reused += ref.size
                continue
            if place_block is not None and await asyncio.to_thread(place_block, ref, fd):
                mark(index)
                reused += ref.size
                continue
            if have_block is not None:
                data = have_block(ref)
                if inspect.isawaitable(data):
                    data = await data
                if data is not None and len(data) == ref.size and _sha256(data) == ref.hash:
                    await asyncio.to_thread(os.pwrite, fd, data, ref.offset)
                    mark(index)
                    reused += ref.size
                    continue
            if wait_for_block is not None:
                await wait_for_block(index)
            await window.submit(ref.size, fetch(index, ref))
        await window.join()
        hasher.ready.set()
        content_hash = await hashing
        await asyncio.to_thread(os.fsync, fd)
    finally:
        await window.cancel()
        hashing.cancel()
        await asyncio.gather(hashing, return_exceptions=True)
        os.close(fd)
    return DownloadResult(manifest.hash, manifest.size, downloaded, reused, content_hash)


class _InOrderHash:
    """The SHA-256 of a file being written block by block, computed while it is written: each
    block is hashed once it and every block before it are in place, from the downloaded bytes
    when they are still at hand (``keep``), else read back from the file (the page cache)."""

    STEP = 8 * 1024 * 1024
    # Downloaded bytes kept for the hash at most this far ahead of it; past that a block is read
    # back later (a slow early block must not make the rest pile up in memory).
    KEEP_AHEAD = IN_FLIGHT_BYTES

    def __init__(self, fd: int, manifest: Manifest) -> None:
        self.fd = fd
        self.blocks = manifest.blocks
        self.ready = asyncio.Event()
        self.index = 0  # the next block to hash
        self._kept: dict[int, bytes] = {}

    def keep(self, index: int, data: bytes) -> None:
        """``data`` is block ``index`` as written: hash it from memory if it is near enough."""
        if index >= self.index and self.blocks[index].offset - self.blocks[
                self.index].offset < self.KEEP_AHEAD:
            self._kept[index] = data

    async def run(self, done: set[int]) -> str:
        digest = hashlib.sha256()
        while (index := self.index) < len(self.blocks):
            run: list[BlockRef] = []
            size = 0
            while index + len(run) < len(self.blocks) and index + len(run) in done \
                    and size < self.STEP:
                ref = self.blocks[index + len(run)]
                run.append(ref)
                size += ref.size
            if not run:
                self.ready.clear()
                await self.ready.wait()
                continue

            def update(refs: list[BlockRef] = run, first: int = index) -> None:
                for i, ref in enumerate(refs, first):
                    data = self._kept.pop(i, None)
                    digest.update(os.pread(self.fd, ref.size, ref.offset) if data is None
                                  else data)

            await asyncio.to_thread(update)
            self.index += len(run)
        return digest.hexdigest()
