"""The receiving half of a folder's engine: snapshot once, then follow the log and apply what
changes, forever. Alone it is a receive-only mirror; ``agent/folder.py`` runs it beside the
sending half for a folder that syncs both ways.

The tasks meet only in the state database. The follower records each event as it arrives (one
transaction: the owner's side of the path plus ``last_seq``), so a restart resumes exactly there;
the SDK's ``follow`` hands each event over once, in order, over Socket.IO or long-polling, and
catches up over HTTP after a gap or a reconnect. The reconciler applies whatever is pending, a
few paths at a time (never two that contain one another, so a folder is not created while a file
of the same name is still being deleted). The watcher, and a full rescan every few minutes,
report local edits. A heartbeat writes the connection state for ``vidsync status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator

from vidsync.agent.mirror.apply import Applier, ContentRejected
from vidsync.agent.mirror.fetch import Fetcher
from vidsync.agent.mirror.prefetch import Prefetcher
from vidsync.agent.mirror.revert import TRASH_DIR, empty_trash
from vidsync.agent.mirror.safepath import PathPolicy, UnsafePath
from vidsync.agent.mirror.smallfiles import is_small
from vidsync.agent.mirror.state import MirrorState, RemoteFile
from vidsync.agent.mirror.ui import Ui, human_bytes
from vidsync.client import (
    ApiError,
    Client,
    ClientError,
    ConnectionState,
    Follower,
    ProjectRemoved,
    ServerUnreachable,
)
from vidsync.content.batches import MAX_BATCH_BYTES

log = logging.getLogger("vidsync.mirror")

WORKERS = 4
# Small files are fetched and installed in batches of at most this many files and bytes...
BATCH_FILES = 500
BATCH_BYTES = MAX_BATCH_BYTES
# ... this many batches at once (one is fetched while another is written).
SMALL_BATCHES = 2
# Events recorded in one transaction at most (as many as have arrived).
RECORD_BATCH = 1000
HEARTBEAT_S = 1.0
SCAN_EVERY_S = 300.0
TRASH_CHECK_S = 24 * 3600.0
# After the server could not be reached, applies wait 1, 2, 4 ... seconds, at most this long.
MAX_OFFLINE_WAIT_S = 5.0


class AgentStopped(Exception):
    """The agent cannot go on (removed from the project, token revoked): the message says why."""


class _Paths:
    """Paths being applied (or waiting behind one), to tell whether another is inside one of
    them or holds one: such a path waits, so changes along one branch keep their order."""

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.folders: set[str] = set()  # every folder holding one of ``paths``

    def add(self, path: str) -> None:
        self.paths.add(path)
        folder = path
        while "/" in folder:
            folder = folder.rpartition("/")[0]
            if folder in self.folders:
                break
            self.folders.add(folder)

    def update(self, paths: Iterable[str]) -> None:
        for path in paths:
            self.add(path)

    def nested(self, path: str) -> bool:
        if path in self.paths or path in self.folders:
            return True
        folder = path
        while "/" in folder:
            folder = folder.rpartition("/")[0]
            if folder in self.paths:
                return True
        return False


class MirrorAgent:
    def __init__(self, root: str | os.PathLike, client: Client, state: MirrorState, ui: Ui,
                 policy: PathPolicy, workers: int = WORKERS, two_way: bool = False) -> None:
        self.root = root
        # Two-way: a path changed here is the sending half's to send, not an edit to report.
        self.two_way = two_way
        self.client = client
        self.state = state
        self.ui = ui
        self.workers = workers
        self.project_id: str = state.get("project_id")  # type: ignore[assignment]
        self.prefixes: list[str] = state.get("prefixes") or []  # type: ignore[assignment]
        self.fetcher = Fetcher(client, self.project_id, state)
        self.applier = Applier(root, state, policy, self.fetcher, self._report)
        # Files announced as being uploaded are fetched ahead of their change.
        self.prefetcher = self.fetcher.prefetcher = Prefetcher(self.fetcher, root, policy, state)
        self.connection = ConnectionState.CONNECTING.value
        self.busy: dict[str, RemoteFile] = {}
        self._wake = asyncio.Event()
        self._offline_until = 0.0
        self._offline_wait = 0.0
        self._follower: Follower | None = None
        self._unrecorded = 0  # events handed out by the follower, not recorded yet
        self._initial = False
        # Socket.IO notices outside the log (``project:role``, locks) for whoever runs this half.
        self.on_notice: Callable[[str, dict], None] | None = None
        self.notices: tuple[str, ...] = ()
        self.on_connected: Callable[[], None] | None = None  # (re)connected: notices may be missed

    def close(self) -> None:
        self.applier.close()

    def _report(self, what: str, path: str, detail: str) -> None:
        if what == "local-edit":
            if self.two_way:
                return  # the sending half sends it (or resolves a conflict)
            detail = f"{detail} here; not sent. 'vidsync revert' restores the owner's version"
        elif what == "edit-gone":
            if self.two_way:
                return
            what, detail = "resolved", "matches the owner's version again"
        self.ui.line(what, path, detail)

    # -- the whole run --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, follow: bool = True,
                  beside: Coroutine | None = None) -> None:
        """Sync, then (if ``follow``) keep following until ``stop`` is set or the agent cannot go
        on (``AgentStopped``). Without ``follow`` it returns once the mirror is up to date.
        ``beside`` (the sending half) runs alongside; its failure ends the run."""
        if self.state.get("snapshot_prefixes") != self.prefixes:
            await self.snapshot()
        elif not follow:
            await self.catch_up()
        self.applier.clear_stale_temp()
        await self.empty_trash()
        if not self.two_way:
            await self.applier.edits.scan()
        files, size = self.state.pending_totals()
        if files:
            self._initial = True
            self.ui.start_overall(files, size)
            self.ui.message(f"syncing {files} files ({human_bytes(size)}) from seq "
                            f"{self.state.last_seq}")
        if not follow:
            await self.reconcile(until_idle=True)
            return
        background = [self._follow(), self.reconcile(), self._heartbeat(),
                      self._empty_trash_daily()]
        if beside is not None:
            background.append(beside)
        if not self.two_way:  # two-way: the sending half's watcher and index see every change
            background += [self.applier.edits.watch(self.busy.keys(), stop), self._rescan()]
        tasks = [asyncio.ensure_future(c) for c in background]
        stopping = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping:
                    task.result()  # raise what ended it
        finally:
            stopping.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._follower is not None:
                await self._follower.close()
            await self.prefetcher.close()
            self._write_heartbeat(ConnectionState.CLOSED.value)

    async def empty_trash(self) -> None:
        """Drop what ``revert`` set aside longer ago than the server keeps old versions."""
        try:
            usage = (await self.client.project(self.project_id)).get("usage") or {}
        except ClientError:
            return  # offline: next time
        retention = usage.get("retention_s")
        if isinstance(retention, (int, float)) and retention > 0:
            removed = await asyncio.to_thread(empty_trash, self.state.dir / TRASH_DIR, retention)
            if removed:
                self.ui.message(f"emptied {len(removed)} trash folder(s) older than the "
                                f"server's retention ({retention / 86400:.0f} days)")

    async def _empty_trash_daily(self) -> None:
        while True:
            await asyncio.sleep(TRASH_CHECK_S)
            await self.empty_trash()

    async def snapshot(self) -> None:
        """Take the owner's whole folder (within ``--only``) as the starting point."""
        listing = await self.client.files(self.project_id, self.prefixes or None)
        self.state.apply_snapshot(listing["files"], listing["seq"])
        self.state.put(snapshot_prefixes=self.prefixes)
        self.ui.message(f"snapshot at seq {listing['seq']}: {len(listing['files'])} files")

    async def catch_up(self) -> None:
        """Record the events the log gained since ``last_seq``, over HTTP (no live follow)."""
        while True:
            page = await self.client.events(self.project_id, self.state.last_seq, limit=1000,
                                            paths=self.prefixes or None)
            self.state.record_events(page["events"])
            if not page["has_more"]:
                self.state.advance_seq(page["last_seq"])
                return

    # -- following ------------------------------------------------------------------------------

    async def _follow(self) -> None:
        def on_state(state: ConnectionState) -> None:
            self.connection = state.value
            self._write_heartbeat(state.value)  # status shows it now, not at the next beat
            if state in (ConnectionState.WEBSOCKET, ConnectionState.POLLING,
                         ConnectionState.HTTP_FALLBACK):
                self._offline_until = 0.0  # the server is back: retry applies at once
                self._wake.set()
                if self.on_connected is not None:
                    self.on_connected()
            self.ui.line("connection", state.value)

        self._follower = follower = self.client.follow(
            self.project_id, self.state.last_seq, self.prefixes or None, on_state=on_state,
            on_upload=self.prefetcher.hint, on_notice=self.on_notice, notices=self.notices)
        arrived: asyncio.Queue[dict] = asyncio.Queue()

        async def read() -> None:
            async for event in follower:
                self._unrecorded += 1  # at once: the follower's seq already covers it
                arrived.put_nowait(event)

        reader = asyncio.ensure_future(read())
        first: asyncio.Future[dict] | None = None
        try:
            while True:
                first = asyncio.ensure_future(arrived.get())
                await asyncio.wait([first, reader], return_when=asyncio.FIRST_COMPLETED)
                if not first.done():
                    first.cancel()
                    reader.result()  # raise what ended the follow
                    return
                # What arrived together (a page of the log, a burst of posts) in one transaction.
                events = [first.result()]
                while not arrived.empty() and len(events) < RECORD_BATCH:
                    events.append(arrived.get_nowait())
                changed = self.state.record_events(events)
                self._unrecorded -= len(events)
                if changed:
                    self._wake.set()
        except ApiError as e:
            if e.status == 401:
                raise AgentStopped("the server refused the token: run 'vidsync login' again") from None
            raise
        except ProjectRemoved as e:
            raise AgentStopped(f"no longer following the project ({e.reason})") from None
        finally:
            reader.cancel()
            if first is not None:
                first.cancel()

    # -- applying -------------------------------------------------------------------------------

    async def reconcile(self, until_idle: bool = False) -> None:
        """Apply pending paths, oldest change first: ``WORKERS`` files at a time, and small files
        in batches (``SMALL_BATCHES`` of them at once, so one is fetched while another is
        written)."""
        running: dict[asyncio.Task, tuple[bool, list[RemoteFile]]] = {}  # (a batch?, its rows)
        try:
            while True:
                self._wake.clear()
                now = time.monotonic()
                if now >= self._offline_until:
                    self._start_ready(running)
                if not running and not self.state.pending(limit=1):
                    if self._initial:
                        self._initial = False
                        self.ui.finish_overall()
                        self.ui.message(f"mirror up to date at seq {self.state.last_seq}")
                    if until_idle:
                        return
                timeout = self._next_wakeup(now)
                waiters = [asyncio.ensure_future(self._wake.wait()), *running]
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                waiters[0].cancel()
                for task in [t for t in running if t.done()]:
                    del running[task]
                    task.result()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _start_ready(self, running: dict[asyncio.Task, tuple[bool, list[RemoteFile]]]) -> None:
        blocked = _Paths()
        for _, rows in running.values():
            blocked.update(r.path for r in rows)
        batches = sum(1 for batch, _ in running.values() if batch)
        singles = len(running) - batches
        batch: list[RemoteFile] = []
        batch_bytes = 0
        deletes: list[RemoteFile] = []
        for row in self.state.pending(limit=SMALL_BATCHES * BATCH_FILES + 2 * self.workers):
            if blocked.nested(row.path):
                blocked.add(row.path)  # keep the order of changes along one branch
                continue
            blocked.add(row.path)
            if row.hash is None:  # deletions: removed together, each folder fsynced once
                if batches < SMALL_BATCHES:
                    deletes.append(row)
                if len(deletes) >= BATCH_FILES:
                    batches += 1
                    self._start(running, True, deletes, self._apply_deletes(deletes))
                    deletes = []
                continue
            if not self._batched(row):
                if singles < self.workers:
                    singles += 1
                    self._start(running, False, [row], self._apply_one(row))
                continue
            if batches >= SMALL_BATCHES:
                continue
            batch.append(row)
            batch_bytes += row.size or 0
            if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                batches += 1
                self._start(running, True, batch, self._apply_batch(batch))
                batch, batch_bytes = [], 0
        if batch:
            self._start(running, True, batch, self._apply_batch(batch))
        if deletes:
            self._start(running, True, deletes, self._apply_deletes(deletes))

    def _batched(self, row: RemoteFile) -> bool:
        """Small files are fetched and installed in batches, unless a batch could not get them."""
        return is_small(row) and row.hash not in self.fetcher.small.unbatched

    def _start(self, running: dict[asyncio.Task, tuple[bool, list[RemoteFile]]], batch: bool,
               rows: list[RemoteFile], work: Coroutine) -> None:
        for row in rows:
            self.busy[row.path] = row
        running[asyncio.ensure_future(work)] = (batch, rows)

    def _next_wakeup(self, now: float) -> float | None:
        candidates = []
        if self._offline_until > now:
            candidates.append(self._offline_until - now)
        retry_at = self.state.next_retry_at()
        if retry_at is not None and retry_at != float("inf"):
            candidates.append(max(0.05, retry_at - time.time()))
        return min(candidates) if candidates else None

    async def _apply_one(self, row: RemoteFile) -> None:
        try:
            with self.ui.transfer(row.path, row.size) as progress:
                outcome = await self.applier.apply(row, progress)
            self._offline_wait = 0.0
            fetched, reused = self.fetcher.results.pop(row.path, (0, 0))
            detail = human_bytes(row.size or 0)
            if reused:
                detail += f", fetched {human_bytes(fetched)}, reused {human_bytes(reused)}"
            self._show([(row, outcome, detail)])
        except ServerUnreachable as e:
            self._unreachable(row.path, e)
        except Exception as e:
            self._error(row, e)
        finally:
            self.busy.pop(row.path, None)
            self._wake.set()

    async def _apply_deletes(self, rows: list[RemoteFile]) -> None:
        """Deletions, applied together (``Applier.delete_many``)."""
        with self._group(rows):
            outcomes = await self.applier.delete_many(rows)
            self._show([(row, outcomes[row.path], "") for row in rows])

    async def _apply_batch(self, rows: list[RemoteFile]) -> None:
        """Small files: their bytes in as few requests as fit, then installed together. What
        the batch could not get is applied file by file (which fetches it again, verifies it,
        and reports what is wrong)."""
        with self._group(rows):
            try:
                got = await self.fetcher.small.get_many(rows)
                files = [(row, got[row.hash]) for row in rows
                         if row.hash in got]  # type: ignore[index]
                outcomes = await self.applier.apply_small(files)
            except ServerUnreachable as e:
                self._unreachable(f"{len(rows)} small files", e)
                return
            self._offline_wait = 0.0
            self.ui.advance(sum(len(data) for _, data in files))
            shown = []
            for row, _ in files:
                outcome = outcomes[row.path]
                if isinstance(outcome, Exception):
                    self._error(row, outcome)
                else:
                    shown.append((row, outcome, human_bytes(row.size or 0)))
            self._show(shown)

    @contextlib.contextmanager
    def _group(self, rows: list[RemoteFile]) -> Iterator[None]:
        """Around a batch's work: if it stops as a whole, each of its paths is told why (and
        retried later); either way they are no longer busy, and the loop looks again."""
        try:
            yield
        except AgentStopped:
            raise
        except Exception as e:
            for row in rows:
                self._error(row, e)
        finally:
            for row in rows:
                self.busy.pop(row.path, None)
            self._wake.set()

    def _show(self, applied: list[tuple[RemoteFile, str, str]]) -> None:
        self.ui.lines([(outcome, row.path, detail if outcome != "deleted" else "")
                       for row, outcome, detail in applied
                       if outcome in ("created", "updated", "deleted")])

    def _unreachable(self, what: str, e: ServerUnreachable) -> None:
        self._offline_wait = min(MAX_OFFLINE_WAIT_S, max(1.0, self._offline_wait * 2))
        self._offline_until = time.monotonic() + self._offline_wait
        log.info("server unreachable while fetching %s: %s", what, e)

    def _error(self, row: RemoteFile, e: Exception) -> None:
        """Record why ``row`` could not be applied; it is retried later."""
        if isinstance(e, ApiError):
            if e.status == 401:
                raise AgentStopped("the server refused the token: run 'vidsync login' again") from None
            self._failed(row, "failed", f"{e.code}: {e.message}")
        elif isinstance(e, ContentRejected):
            self._failed(row, "rejected", str(e))
        elif isinstance(e, UnsafePath):  # found at write time, e.g. a parent replaced by a symlink
            self._failed(row, "refused", str(e))
        elif isinstance(e, OSError):
            self._failed(row, "failed", f"cannot write: {e.strerror or e}")
        else:  # one file's bug must not stop the mirror: log it, retry later
            log.error("applying %s", row.path, exc_info=e)
            self._failed(row, "failed", f"internal error: {e!r}")

    def _failed(self, row: RemoteFile, what: str, error: str) -> None:
        """Record the failure (``what: error``, shown by status) and retry later, backing off."""
        attempts = self.state.fail(row.path, row.hash, f"{what}: {error}")
        self.ui.line(what, row.path, f"{error}; attempt {attempts}, will retry")

    # -- background -----------------------------------------------------------------------------

    async def _rescan(self) -> None:
        while True:
            await asyncio.sleep(SCAN_EVERY_S)
            await self.applier.edits.scan()
            self._wake.set()

    async def _heartbeat(self) -> None:
        while True:
            follower = self._follower
            if follower is not None and follower.seq > self.state.last_seq \
                    and not self._unrecorded:
                # With --only, the log moves on past events this mirror does not get. (Not
                # while events it handed out wait to be recorded: they would be skipped.)
                self.state.advance_seq(follower.seq)
            self._write_heartbeat(self.connection)
            await asyncio.sleep(HEARTBEAT_S)

    def _write_heartbeat(self, connection: str) -> None:
        self.state.put(agent={
            "pid": os.getpid(), "connection": connection, "updated_at": time.time(),
            "transferring": sorted(self.busy)[:20]})

