"""Content for the applier, through the SDK: only the blocks the mirror does not already hold.

For an update, the previous version on disk is a source of blocks: its manifest (asked from the
server; small) maps block hashes to offsets. While the file's size, mtime, inode and ctime are
what they were when this agent verified and installed it, its blocks are taken as they are (as
Syncthing does), by reflink where the filesystem can (``Copier``), so a 1 MiB edit inside a 1 GiB
file downloads and writes about one block. A file whose ctime was not recorded gives its blocks
only after they hash right. A temp file left by a killed download is resumed the same way (the SDK
hashes the blocks already at their offsets).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from vidsync.agent.mirror.apply import ContentRejected
from vidsync.agent.mirror.copier import Copier
from vidsync.agent.mirror.smallfiles import SmallFiles
from vidsync.agent.mirror.state import MirrorState, RemoteFile
from vidsync.client import ApiError, BlockRef, Client, ContentMismatch
from vidsync.content.blocks import EMPTY_HASH, Manifest

if TYPE_CHECKING:
    from vidsync.agent.mirror.prefetch import Prefetcher


class Fetcher:
    """``Fetch`` for ``Applier``: writes a file's content into a temp file."""

    def __init__(self, client: Client, project_id: str, state: MirrorState) -> None:
        self.client = client
        self.project_id = project_id
        self.state = state
        # The last download of each path: (bytes downloaded, bytes taken from local blocks).
        self.results: dict[str, tuple[int, int]] = {}
        self.copier = Copier()
        self.prefetcher: Prefetcher | None = None  # set by the agent that follows uploads
        self.small = SmallFiles(client, project_id)  # small files' bytes, in batches

    async def __call__(self, row: RemoteFile, tmp_path: str, reuse: str | None,
                       progress: Callable[[int], None]) -> str | None:
        """Write the content into ``tmp_path``; returns the SHA-256 of what was written."""
        assert row.hash is not None
        if row.hash == EMPTY_HASH:
            with open(tmp_path, "wb"):  # noqa: ASYNC230 - creating an empty file does not block
                self.results[row.path] = (0, 0)
                return EMPTY_HASH
        manifest = await self._manifest(row.hash)
        if manifest is None:
            raise ContentRejected(f"{row.path}: the server has no content for {row.hash[:12]}...")
        if manifest.hash != row.hash or (row.size is not None and manifest.size != row.size):
            raise ContentRejected(f"{row.path}: the server's manifest is for other content")
        done: set[int] | None = None
        if self.prefetcher is not None:
            early = await self.prefetcher.take(row.path, manifest)
            if early is not None:
                written, done = early
                if written is not None:  # fetched whole while the owner was uploading
                    return written
        return await self.download(row.path, manifest, tmp_path, reuse, progress, done=done)

    async def download(self, path: str, manifest: Manifest, tmp_path: str, reuse: str | None,
                       progress: Callable[[int], None], *, done: set[int] | None = None,
                       wait_for_block: Callable[[int], Awaitable[None]] | None = None) -> str | None:
        """Write ``manifest``'s content into ``tmp_path``, taking blocks from the previous version
        at ``reuse`` where it has them; returns the SHA-256 of what was written."""
        old = await self._old_version(path, reuse) if reuse else None
        try:
            result = await self.client.download_file(
                self.project_id, manifest, tmp_path, on_progress=progress, done=done,
                wait_for_block=wait_for_block,
                place_block=old.place if old is not None else None)
        except ContentMismatch as e:
            raise ContentRejected(f"{path}: {e}") from None
        finally:
            if old is not None:
                old.close()
        if old is not None and not old.still_unchanged():
            raise ContentRejected(f"{path}: the previous version changed while blocks were "
                                  "taken from it")
        self.results[path] = (result.downloaded_bytes, result.reused_bytes)
        return result.content_hash

    async def _manifest(self, digest: str) -> Manifest | None:
        try:
            return await self.client.manifest(self.project_id, digest)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        except ValueError as e:  # a malformed manifest
            raise ContentRejected(f"manifest {digest[:12]}...: {e}") from None

    async def _old_version(self, path: str, local_path: str) -> _OldVersion | None:
        """The previous version at ``local_path`` as a source of blocks, if it is still the file
        this agent installed."""
        old = self.state.local(path)
        if old is None or old.hash == EMPTY_HASH:
            return None
        try:
            manifest = await self._manifest(old.hash)
        except ContentRejected:
            return None
        if manifest is None:
            return None
        try:
            fd = os.open(local_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        st = os.fstat(fd)
        if not old.matches(st):
            os.close(fd)
            return None
        return _OldVersion(fd, st, manifest, old.unchanged(st), self.copier)


class _OldVersion:
    """An open previous version of a file and where each of its blocks is."""

    def __init__(self, fd: int, st: os.stat_result, manifest: Manifest, trusted: bool,
                 copier: Copier) -> None:
        self.fd = fd
        self.st = st
        self.offsets = {b.hash: b for b in manifest.blocks}
        self.trusted = trusted  # verified and untouched since: blocks are copied unread
        self.copier = copier
        self.last_st = st

    def place(self, ref: BlockRef, dst_fd: int) -> bool:
        """``place_block`` for the SDK (blocking)."""
        src = self.offsets.get(ref.hash)
        if src is None or src.size != ref.size:
            return False
        if self.trusted:
            self.copier.copy(self.fd, src.offset, dst_fd, ref.offset, ref.size)
            return True
        data = os.pread(self.fd, src.size, src.offset)
        if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.hash:
            return False
        os.pwrite(dst_fd, data, ref.offset)
        return True

    def close(self) -> None:
        """Close it, noting its stat at the end of the copy."""
        self.last_st = os.fstat(self.fd)
        os.close(self.fd)

    def still_unchanged(self) -> bool:
        """Nothing touched the old file while blocks were copied from it (call after close)."""
        def sig(st: os.stat_result) -> tuple:
            return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
        return sig(self.last_st) == sig(self.st)
