"""Fetching a file while the owner is still uploading it.

The server tells members about an upload in progress with ``project:upload`` (outside the log):
the file's path, hash and blocks when it starts, then how many blocks, from the first, it holds
and has checked. For each announced file (a few at a time) this fetches those blocks into the
temp file the applier will use for that path and content, taking unchanged blocks from the
previous version as an update would. Nothing is installed here: the file appears only when the
change arrives in the log and the applier has checked the whole file's SHA-256 against it, so a
file is never shown before it is complete and verified. When the change comes, the applier finds
the blocks already local (``take``); an upload that stalls or fails is dropped, and whatever it
fetched is resumed (each block hashed again) if the change ever comes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vidsync.agent.mirror.apply import TMP_DIR, Applier
from vidsync.agent.mirror.fetch import Fetcher
from vidsync.agent.mirror.safepath import PathPolicy, UnsafePath
from vidsync.agent.mirror.state import MirrorState, RemoteFile
from vidsync.content.blocks import Manifest

log = logging.getLogger("vidsync.mirror")

# Files fetched ahead at once; further announcements wait for their change like any other.
MAX_AHEAD = 4
# An announced upload with no news for this long is given up.
IDLE_S = 30.0
# A file fetched ahead waits this long for its change before its slot is given to another.
KEEP_S = 300.0


class _Abandoned(Exception):
    """The upload failed or went quiet."""


@dataclass(eq=False)
class _Ahead:
    path: str
    manifest: Manifest
    ready: int = 0  # blocks [0, ready) are stored on the server
    failed: bool = False
    heard: float = field(default_factory=time.monotonic)
    news: asyncio.Event = field(default_factory=asyncio.Event)
    done: set[int] = field(default_factory=set)  # blocks written and checked in the temp file
    task: asyncio.Task | None = None

    async def wait_for_block(self, index: int) -> None:
        while self.ready <= index:
            if self.failed or time.monotonic() - self.heard > IDLE_S:
                raise _Abandoned()
            self.news.clear()
            try:
                await asyncio.wait_for(self.news.wait(), 1.0)
            except TimeoutError:
                pass


class Prefetcher:
    def __init__(self, fetcher: Fetcher, root: str | os.PathLike, policy: PathPolicy,
                 state: MirrorState) -> None:
        self.fetcher = fetcher
        self.root = Path(root)
        self.policy = policy
        self.state = state
        self.tmp_dir = state.dir / TMP_DIR
        self._ahead: dict[tuple[str, str], _Ahead] = {}

    def hint(self, msg: dict) -> None:
        """A ``project:upload`` message (from the follower, on the event loop)."""
        path, digest = msg.get("path"), msg.get("hash")
        if not isinstance(path, str) or not isinstance(digest, str):
            return
        ahead = self._ahead.get((path, digest))
        if ahead is None:
            if msg.get("state") == "started":
                self._start(path, msg)
            return
        ahead.heard = time.monotonic()
        ready = msg.get("ready_blocks")
        if isinstance(ready, int):
            ahead.ready = max(ahead.ready, ready)
        if msg.get("state") == "stored":
            ahead.ready = len(ahead.manifest.blocks)
        elif msg.get("state") == "failed":
            ahead.failed = True
        ahead.news.set()

    def _start(self, path: str, msg: dict) -> None:
        for key, old in list(self._ahead.items()):  # fetched, but no change came for it
            if old.task is not None and old.task.done() and time.monotonic() - old.heard > KEEP_S:
                del self._ahead[key]
        if len(self._ahead) >= MAX_AHEAD:
            return
        try:
            if self.policy.check(path) != path:
                return
            manifest = Manifest.from_json(msg)
        except (UnsafePath, ValueError):
            return
        local = self.state.local(path)
        if local is not None and local.hash == manifest.hash:
            return  # already here
        ahead = self._ahead[(path, manifest.hash)] = _Ahead(path, manifest)
        ahead.ready = msg.get("ready_blocks") if isinstance(msg.get("ready_blocks"), int) else 0
        ahead.task = asyncio.ensure_future(self._run(ahead))

    async def _run(self, ahead: _Ahead) -> str | None:
        """Fetch the announced file into its temp file; its SHA-256 once complete."""
        row = RemoteFile(ahead.path, ahead.manifest.hash, ahead.manifest.size, None, 0)
        tmp_path = str(self.tmp_dir / Applier.temp_name(row))
        reuse = str(self.root / ahead.path) if self.state.local(ahead.path) is not None else None
        try:
            return await self.fetcher.download(ahead.path, ahead.manifest, tmp_path, reuse,
                                               lambda n: None, done=ahead.done,
                                               wait_for_block=ahead.wait_for_block)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the change, if it comes, fetches what is missing
            log.info("fetching %s ahead of its change stopped: %r", ahead.path, e)
            if self._ahead.get((ahead.path, ahead.manifest.hash)) is ahead:
                del self._ahead[(ahead.path, ahead.manifest.hash)]
            return None

    async def take(self, path: str, manifest: Manifest) -> tuple[str | None, set[int]] | None:
        """The change for ``path`` with this content arrived: wait for the fetch ahead, if any,
        and return (the SHA-256 of the temp file if it is complete, the blocks it holds)."""
        ahead = self._ahead.pop((path, manifest.hash), None)
        if ahead is None or ahead.task is None or ahead.manifest != manifest:
            return None
        ahead.ready = len(manifest.blocks)  # the change is proof the server holds them all
        ahead.heard = time.monotonic()
        ahead.news.set()
        written = await ahead.task
        return written, ahead.done

    async def close(self) -> None:
        tasks = [a.task for a in self._ahead.values() if a.task is not None]
        self._ahead.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
