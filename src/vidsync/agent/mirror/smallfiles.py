"""Small files' content fetched ahead in batches (``content-batch/get``, up to 1000 a request).

A frame sequence is thousands of files of a few KB: asking for each one's manifest and content
would make two round trips per file the limit. When the applier wants a small file, this asks
for it together with the next small files waiting to be applied, and keeps their bytes (already
checked against their hashes by the SDK) until the applier asks for them. What could not be had
this way (missing, damaged on the server, an error) answers None, and the fetcher falls back to
the file-by-file download, which verifies again and reports.
"""

from __future__ import annotations

import asyncio
import logging

from vidsync.agent.mirror.state import MirrorState, RemoteFile
from vidsync.client import Client, ClientError
from vidsync.content.batches import MAX_BATCH_BYTES, MAX_BATCH_FILE_SIZE, pack

log = logging.getLogger("vidsync.join")

# Pending rows looked at for a batch (the applier takes them oldest first, as listed).
LOOKAHEAD = 2000
# Bytes kept for rows not applied yet; past it the cache is dropped (they are fetched again).
MAX_READY_BYTES = 4 * MAX_BATCH_BYTES


def is_small(row: RemoteFile) -> bool:
    return row.hash is not None and row.size is not None and 0 < row.size <= MAX_BATCH_FILE_SIZE


class SmallFiles:
    def __init__(self, client: Client, project_id: str, state: MirrorState) -> None:
        self.client = client
        self.project_id = project_id
        self.state = state
        self.ready: dict[str, bytes] = {}
        self.ready_bytes = 0
        self.waiting: dict[str, asyncio.Future[None]] = {}

    async def get(self, row: RemoteFile) -> bytes | None:
        """``row``'s verified bytes, fetched with the small files pending after it."""
        assert row.hash is not None
        if row.hash not in self.ready:
            if row.hash not in self.waiting:
                self._start(row)
            await asyncio.shield(self.waiting[row.hash])
        data = self.ready.pop(row.hash, None)
        if data is not None:
            self.ready_bytes -= len(data)
        return data

    def _start(self, row: RemoteFile) -> None:
        assert row.hash is not None
        wanted = {row.hash: row.size or 0}
        for r in self.state.pending(limit=LOOKAHEAD):
            if is_small(r) and r.hash not in self.ready and r.hash not in self.waiting:
                wanted.setdefault(r.hash, r.size or 0)  # type: ignore[arg-type]
        batch = next(pack(wanted.items()))
        done = asyncio.get_running_loop().create_future()
        for h in batch:
            self.waiting[h] = done
        asyncio.ensure_future(self._fetch(batch, done))

    async def _fetch(self, hashes: list[str], done: asyncio.Future[None]) -> None:
        try:
            got = await self.client.get_small_files(self.project_id, hashes)
            if got.damaged:
                log.warning("%d file(s) did not match their hash as sent by the server; "
                            "fetching them one by one", len(got.damaged))
            if self.ready_bytes > MAX_READY_BYTES:
                self.ready.clear()
                self.ready_bytes = 0
            for h, data in got.files.items():
                if h not in self.ready:
                    self.ready[h] = data
                    self.ready_bytes += len(data)
        except ClientError as e:  # the file-by-file path meets (and reports) it again
            log.info("fetching %d small file(s) at once failed: %s", len(hashes), e)
        finally:
            for h in hashes:
                self.waiting.pop(h, None)
            done.set_result(None)
