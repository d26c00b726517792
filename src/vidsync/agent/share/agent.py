"""The sending half of a folder's engine (``agent/folder.py``): watch, index, send.

Three tasks share one event loop: the watcher (watchfiles) notes which paths moved; the scan loop
gathers them for one debounce window, updates the index (hashing what settled) and runs the
periodic full rescan; the syncer sends whatever the index has that the server lacks. They meet
only in the folder's database, so a dead server or a ``kill -9`` loses nothing: on restart the
difference between the index and the synced versions is sent again, and the outbox's idempotency
keys make a repeated post a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from vidsync.agent import lockfile
from vidsync.agent.config import Credentials
from vidsync.agent.share.ignore import IGNORE_FILE, IgnoreRules
from vidsync.agent.share.indexer import Indexer
from vidsync.agent.share.progress import Bars
from vidsync.agent.share.scanner import server_path
from vidsync.agent.share.state import ShareState, state_dir
from vidsync.agent.share.sync import Backoff, Fatal, OnConflict, Syncer
from vidsync.changes import RESERVED_DIR
from vidsync.client import ApiError, Client, ServerUnreachable

log = logging.getLogger("vidsync.share")
LOCK_FILE = "share.lock"


@dataclass(frozen=True)
class ShareOptions:
    name: str | None = None
    debounce_s: float = 0.5
    settle_s: float = 0.25
    rescan_s: float = 600.0
    heartbeat_s: float = 30.0


class AlreadyRunning(Exception):
    pass


def lock_folder(root: Path) -> int:
    """Hold ``DIR/.vidsync/share.lock`` for the agent's life: one agent per folder."""
    state_dir(root).mkdir(exist_ok=True)
    fd = lockfile.hold(state_dir(root) / LOCK_FILE)
    if fd is None:
        raise AlreadyRunning(f"another 'vidsync share' is already running for {root}")
    return fd


async def ensure_project(client: Client, state: ShareState, creds: Credentials, root: Path,
                         name: str | None) -> str:
    """The folder's project: the one recorded in its state, else a new one (recorded at once)."""
    server = state.get("server")
    project_id = state.get("project_id")
    if project_id and server == creds.server:
        return str(project_id)
    if project_id:
        raise Fatal(f"{root} is shared with project {project_id} on {server}; remove "
                    f"{state_dir(root)} to share it on {creds.server} instead")
    backoff = Backoff()
    while True:
        try:
            project = await client.create_project(name or root.name or "shared folder")
            break
        except ServerUnreachable as e:
            delay = backoff.next()
            log.warning("cannot reach %s (%s); retrying in %.1f s", creds.server, e, delay)
            await asyncio.sleep(delay)
        except ApiError as e:
            raise Fatal(f"cannot create the project: {e}") from e
    state.set(project_id=project["id"], server=creds.server, project_name=project["name"])
    log.info("created project %r (%s)", project["name"], project["id"])
    return project["id"]


class Sender:
    """Sends this folder's changes to the project; ``run`` returns only by an exception."""

    def __init__(self, root: Path, client: Client, project_id: str, state: ShareState,
                 options: ShareOptions, on_conflict: OnConflict) -> None:
        self.root = root
        self.options = options
        self.state = state
        self.rules = IgnoreRules(root)
        self.indexer = Indexer(root, self.state, self.rules, options.settle_s)
        self.bars = Bars()
        self.dirty: set[str] = set()
        self.dirty_event = asyncio.Event()
        self.stop = asyncio.Event()
        self.on_marked: Callable[[set[str]], None] | None = None  # what the watcher saw move
        self.syncer = Syncer(client, project_id, self.state, self.bars,
                             on_stale=lambda p: self.mark({p}), on_conflict=on_conflict,
                             busy=lambda: {sp for fp in self.indexer.unsettled
                                           if (sp := server_path(fp)) is not None},
                             heartbeat_s=options.heartbeat_s, kept=self.indexer.take_content)

    def mark(self, fspaths: set[str]) -> None:
        self.dirty |= fspaths
        self.dirty_event.set()
        if self.on_marked is not None:
            self.on_marked(fspaths)

    async def run(self) -> None:
        self.state.set(pid=os.getpid(), started_at=time.time(), uploads=[])
        tasks = [asyncio.create_task(self._watch(), name="watch")]
        try:
            await self._first_scan()
            self.syncer.wake.set()
            tasks += [asyncio.create_task(self.syncer.run(), name="sync"),
                      asyncio.create_task(self._scan_loop(self.syncer), name="scan"),
                      asyncio.create_task(self.stop.wait(), name="stop")]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.state.set(uploads=[], server_reachable=None)
        for t in done:
            if t.exception() is not None:
                raise t.exception()

    async def _first_scan(self) -> None:
        started = time.monotonic()
        self.bars.start("hashing", None)
        if self.bars.enabled:
            self.indexer.on_hash_bytes = self.bars.advance
        try:
            await self.indexer.rescan()
        finally:
            self.bars.stop()
            self.indexer.on_hash_bytes = None
        log.info("scanned %s: %d file(s) indexed, %d MB hashed in %.1f s, %d still being written",
                 self.root, len(self.state.local_paths()), self.indexer.hashed_bytes // 10**6,
                 time.monotonic() - started, len(self.indexer.unsettled))

    async def _watch(self) -> None:
        root = str(self.root)

        def keep(_: watchfiles.Change, path: str) -> bool:
            rel = os.path.relpath(path, root)
            return rel != RESERVED_DIR and not rel.startswith(RESERVED_DIR + os.sep)

        polling = False
        while not self.stop.is_set():
            try:
                async for changes in watchfiles.awatch(
                        # Hand events over at once (10 ms of quiet, 100 ms at most): the
                        # debounce window is the scan loop's, not the watcher's, so a change
                        # waits one window in all, not two.
                        self.root, watch_filter=keep, step=10, stop_event=self.stop, debounce=100,
                        ignore_permission_denied=True, force_polling=polling or None):
                    self.mark(_relative(root, {p for _, p in changes}))
            except Exception as e:  # e.g. the OS's limit of watches reached on a huge tree
                if polling:
                    raise
                log.warning("the file system watcher failed (%s); polling instead", e)
                polling = True
                self.mark({""})  # whatever happened meanwhile: rescan

    async def _scan_loop(self, syncer: Syncer) -> None:
        next_rescan = time.monotonic() + self.options.rescan_s
        while True:
            deadline = min(next_rescan, self.indexer.next_recheck() or next_rescan)
            try:
                await asyncio.wait_for(self.dirty_event.wait(),
                                       max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                pass
            # One debounce window, opened by the first event or the first file due to settle:
            # whatever else moves or settles meanwhile joins the same batch.
            await asyncio.sleep(self.options.debounce_s)
            self.dirty_event.clear()
            paths, self.dirty = self.dirty, set()
            if IGNORE_FILE in paths:
                self.rules.reload()
                log.info("%s changed: rescanning", IGNORE_FILE)
                next_rescan = 0.0
            if "" in paths or time.monotonic() >= next_rescan:
                changed = await self.indexer.rescan()
                next_rescan = time.monotonic() + self.options.rescan_s
            else:
                changed = await self.indexer.reconcile(paths | self.indexer.due())
            if changed:
                syncer.wake.set()


def _relative(root: str, paths: set[str]) -> set[str]:
    """Watch events' absolute paths as ``/``-separated paths relative to the root ("" for it)."""
    rels = {os.path.relpath(p, root).replace(os.sep, "/") for p in paths}
    return {"" if r == "." else r for r in rels if not r.startswith("..")}
