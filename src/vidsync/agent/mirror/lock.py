"""The mirror's apply lock: one change to the mirror's files and records at a time, across processes.

The join agent and ``vidsync revert`` may run at once; each look-then-change of a path (examining
it, renaming into place, moving an edit aside) happens under this lock, so neither acts on what
the other has just changed.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

POLL_S = 0.01


class ApplyLock:
    """One apply at a time per mirror, across processes (the agent and ``vidsync revert``)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._local = asyncio.Lock()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._local:
            # Polled rather than a blocking flock on a thread: a cancelled wait then leaves no
            # thread behind that would take the lock later and never give it back.
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(POLL_S)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
