"""Small files' content fetched in batches (``content-batch/get``, up to 1000 a request).

A frame sequence is thousands of files of a few KB: asking for each one's manifest and content
would make two round trips per file the limit. The engine takes pending small files in batches;
this fetches a batch's bytes (each checked against its hash by the SDK, and again by the applier
before it is written) in as few requests as the batch limits allow. What could not be had this way
(missing, damaged on the server, an error) is left out and remembered in ``unbatched``: the engine
then applies those files one by one, and the file-by-file download verifies again and reports.
"""

from __future__ import annotations

import asyncio
import logging

from vidsync.agent.mirror.state import RemoteFile
from vidsync.client import Client, ClientError, ServerUnreachable
from vidsync.content.batches import MAX_BATCH_FILE_SIZE, pack

log = logging.getLogger("vidsync.join")


def is_small(row: RemoteFile) -> bool:
    return row.hash is not None and row.size is not None and 0 < row.size <= MAX_BATCH_FILE_SIZE


class SmallFiles:
    def __init__(self, client: Client, project_id: str) -> None:
        self.client = client
        self.project_id = project_id
        # Content a batch asked for and did not get: fetched file by file from then on.
        self.unbatched: set[str] = set()

    async def get_many(self, rows: list[RemoteFile]) -> dict[str, bytes]:
        """The verified bytes of ``rows`` (small files), by hash, as far as batches got them.
        ``ServerUnreachable`` if the server could not be reached (nothing is given up then)."""
        wanted: dict[str, int] = {}
        for row in rows:
            assert row.hash is not None
            wanted.setdefault(row.hash, row.size or 0)
        answers = await asyncio.gather(
            *(self._fetch(hashes) for hashes in pack(wanted.items())), return_exceptions=True)
        got: dict[str, bytes] = {}
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            got.update(answer)
        self.unbatched.update(h for h in wanted if h not in got)
        return got

    async def _fetch(self, hashes: list[str]) -> dict[str, bytes]:
        try:
            answer = await self.client.get_small_files(self.project_id, hashes)
        except ServerUnreachable:
            raise
        except ClientError as e:  # the file-by-file path meets (and reports) it again
            log.info("fetching %d small file(s) at once failed: %s", len(hashes), e)
            return {}
        if answer.damaged:
            log.warning("%d file(s) did not match their hash as sent by the server; "
                        "fetching them one by one", len(answer.damaged))
        return answer.files
