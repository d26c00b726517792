"""Content for the applier, through the SDK: only the blocks the mirror does not already hold.

For an update, the previous version on disk is a source of blocks: its manifest (asked from the
server; small) maps block hashes to offsets, and the SDK checks every block it takes from there, so
a 1 MiB edit inside a 1 GiB file downloads about one block. A temp file left by a killed download
is resumed the same way (the SDK reuses the blocks already at their offsets).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from vidsync.agent.mirror.apply import ContentRejected
from vidsync.agent.mirror.state import MirrorState, RemoteFile
from vidsync.client import ApiError, BlockRef, Client, ContentMismatch
from vidsync.content.blocks import EMPTY_HASH, Manifest


class Fetcher:
    """``Fetch`` for ``Applier``: writes a file's content into a temp file."""

    def __init__(self, client: Client, project_id: str, state: MirrorState) -> None:
        self.client = client
        self.project_id = project_id
        self.state = state
        # The last download of each path: (bytes downloaded, bytes taken from local blocks).
        self.results: dict[str, tuple[int, int]] = {}

    async def __call__(self, row: RemoteFile, tmp_path: str, reuse: str | None,
                       progress: Callable[[int], None]) -> None:
        assert row.hash is not None
        if row.hash == EMPTY_HASH:
            with open(tmp_path, "wb"):  # noqa: ASYNC230 - creating an empty file does not block
                self.results[row.path] = (0, 0)
                return
        manifest = await self._manifest(row.hash)
        if manifest is None:
            raise ContentRejected(f"{row.path}: the server has no content for {row.hash[:12]}...")
        if manifest.hash != row.hash or (row.size is not None and manifest.size != row.size):
            raise ContentRejected(f"{row.path}: the server's manifest is for other content")
        have_block = await self._old_blocks(row.path, reuse) if reuse else None
        try:
            result = await self.client.download_file(self.project_id, manifest, tmp_path,
                                                     have_block=have_block, on_progress=progress)
        except ContentMismatch as e:
            raise ContentRejected(f"{row.path}: {e}") from None
        self.results[row.path] = (result.downloaded_bytes, result.reused_bytes)

    async def _manifest(self, digest: str) -> Manifest | None:
        try:
            return await self.client.manifest(self.project_id, digest)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        except ValueError as e:  # a malformed manifest
            raise ContentRejected(f"manifest {digest[:12]}...: {e}") from None

    async def _old_blocks(self, path: str, local_path: str) -> Callable | None:
        """A ``have_block`` that reads blocks from the previous version at ``local_path``."""
        old = self.state.local(path)
        if old is None or old.hash == EMPTY_HASH:
            return None
        try:
            manifest = await self._manifest(old.hash)
        except ContentRejected:
            return None
        if manifest is None:
            return None
        offsets = {b.hash: b for b in manifest.blocks}

        def read(ref: BlockRef) -> bytes | None:
            src = offsets.get(ref.hash)
            if src is None or src.size != ref.size:
                return None
            try:
                fd = os.open(local_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                return None
            try:
                return os.pread(fd, src.size, src.offset)
            finally:
                os.close(fd)

        async def have_block(ref: BlockRef) -> bytes | None:
            if ref.hash not in offsets:
                return None
            return await asyncio.to_thread(read, ref)

        return have_block
