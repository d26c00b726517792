"""Bring the server up to the local index: upload content, then post the changes, in order.

One pass: send the outbox; then while the index differs from the synced versions: upload the
content of the differing files (only blocks the server lacks), freeze the changes into outbox
batches (at most 1000 changes each, each with a fresh idempotency key, stored before the first
attempt), and send them. Every change carries ``base``, the hash its local copy was derived from
(null for a new file): a batch refused with 409 ``conflict`` goes to ``on_conflict``, which keeps
both versions, and the next pass sends what is left. A server that cannot be reached, or answers
5xx/429, ends the pass; it is retried with exponential backoff while the watcher goes on updating
the index, so the next pass sends everything that happened meanwhile. A 403 means this member may
no longer write (``ReadOnly``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson

from vidsync.agent.share.progress import LARGE_TRANSFER, Bars
from vidsync.agent.share.state import LocalFile, OutboxBatch, Pending, ShareState
from vidsync.changes import MAX_CHANGES_PER_BATCH
from vidsync.client import ApiError, Client, ContentMismatch, ServerUnreachable
from vidsync.content.batches import MAX_BATCH_FILE_SIZE, pack

log = logging.getLogger("vidsync.share")

# The server takes JSON bodies up to 4 MiB; 1000 changes with long paths could pass that.
MAX_BATCH_JSON = 3 * 1024 * 1024
# Files uploaded side by side (each also sends several blocks at once, see Client).
FILE_CONCURRENCY = 4
# Batches of small files (up to 1000 each, content-batch) in flight at once: while the server
# hashes and fsyncs one, the next is being read and sent.
BATCH_CONCURRENCY = 3
# Changes uploaded per step of a pass: the posts of one step go out while the next one's content
# is uploaded (a window of small files is BATCH_CONCURRENCY content-batch requests).
SEND_WINDOW = BATCH_CONCURRENCY * 1000
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
# How often "uploads in progress" is written to the state for ``vidsync status``.
PROGRESS_EVERY_S = 0.5


class Retry(Exception):
    """The server is unreachable or overloaded: try the pass again later."""


class Refused(Retry):
    """The server refused a batch in a way that a new attempt may fix (content gone meanwhile):
    try again after a pause, so a server that keeps refusing is not hammered."""


class Fatal(Exception):
    """The agent cannot go on without the user (token revoked, project deleted)."""


class ReadOnly(Exception):
    """The server no longer takes this member's changes (a viewer now): stop sending."""


# conflict handler: (the refused batch, the server's ``conflicts`` list) -> how many it resolved
OnConflict = Callable[[OutboxBatch, list[dict]], Awaitable[int]]
# a small file's content as it was hashed: ((size, mtime_ns, ino, ctime_ns) then, hash, bytes)
Kept = tuple[tuple[int, int, int, int], str, bytes]


def _classify(e: ApiError, what: str) -> Exception:
    if e.status >= 500 or e.status == 429:
        return Retry(f"{what}: {e}")
    if e.status == 401:
        return Fatal("the server rejected the token: run 'vidsync login' again")
    if e.status == 403:
        return ReadOnly(f"{what}: {e.message}")
    if e.status == 404:
        return Fatal(f"{what}: {e.message} (was the project deleted?)")
    return e


def split_batches(changes: list[dict]) -> list[list[dict]]:
    """Cut a run of changes into postable batches, keeping their order."""
    batches: list[list[dict]] = []
    current: list[dict] = []
    size = 0
    for c in changes:
        n = len(orjson.dumps(c)) + 1
        if current and (len(current) >= MAX_CHANGES_PER_BATCH or size + n > MAX_BATCH_JSON):
            batches.append(current)
            current, size = [], 0
        current.append(c)
        size += n
    if current:
        batches.append(current)
    return batches


class Backoff:
    """Exponential backoff with full jitter, so many agents do not return in step."""

    def __init__(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Syncer:
    """The sending half of the agent; ``wake`` asks it for a pass."""

    def __init__(self, client: Client, project_id: str, state: ShareState, bars: Bars,
                 on_stale: Callable[[str], None], on_conflict: OnConflict,
                 heartbeat_s: float = 30.0, busy: Callable[[], set[str]] = set,
                 kept: Callable[[str], Kept | None] = lambda _: None) -> None:
        self.client = client
        self.on_conflict = on_conflict
        self.heartbeat_s = heartbeat_s  # an idle agent checks the server this often
        self.project_id = project_id
        self.state = state
        self.bars = bars
        self.on_stale = on_stale  # a file's bytes no longer match its hash: look at it again
        # Paths being written right now: the index's entry for them is stale, so no change is
        # derived for them (else a file still settling would be reverted or deleted remotely).
        self.busy = busy
        # A small file's bytes as the indexer hashed them (by fspath), so it is not read twice.
        self.kept = kept
        self.wake = asyncio.Event()
        self.connected = False
        # (path, hash) the server refused for good (e.g. too large); skipped until they change.
        self.rejected: set[tuple[str, str | None]] = set()
        # Paths someone else has locked (423): their changes wait for the lock to go.
        self.held: set[str] = set()
        self.uploads: dict[str, list[int]] = {}
        self._progress_written = 0.0
        self.first_sync = state.get("last_posted_seq") is None

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), self.heartbeat_s)
            except TimeoutError:
                await self._heartbeat()
                if self.held:  # a missed unlock notice costs a heartbeat, not the change
                    self.held.clear()
                    self.wake.set()
                continue
            self.wake.clear()
            try:
                await self.sync_pass()
                backoff.reset()
            except (Retry, ServerUnreachable) as e:
                delay = backoff.next()
                if isinstance(e, Refused):
                    self.state.set(last_error=str(e))
                    log.warning("%s; sending again in %.1f s", e, delay)
                else:
                    self.connected = False
                    self.state.set(server_reachable=False, last_error=str(e))
                    log.warning("server unavailable (%s); retrying in %.1f s", e, delay)
                self._clear_uploads()
                await asyncio.sleep(delay)
                self.wake.set()

    async def _heartbeat(self) -> None:
        """While idle, keep ``server_reachable`` true to life (and notice a revoked token)."""
        try:
            await self.client.me()
        except ServerUnreachable as e:
            if self.connected:
                log.warning("server unavailable (%s)", e)
            self.connected = False
            self.state.set(server_reachable=False, last_error=str(e))
            return
        except ApiError as e:
            err = _classify(e, "checking the token")
            if isinstance(err, Fatal):
                raise err from e
            return
        if not self.connected:
            self.wake.set()  # back: send whatever waited

    async def sync_pass(self) -> None:
        if not self.connected:
            try:
                await self.client.me()
            except ApiError as e:
                raise _classify(e, "checking the token") from e
            self.connected = True
            self.state.set(server_reachable=True, last_error=None)
            log.info("connected to the server")
        await self._flush()
        while pending := self._pending():
            if not await self._send(pending):
                break  # the indexer re-hashes the stale files and wakes us again
        self.first_sync = False

    async def _send(self, pending: list[Pending]) -> bool:
        """Upload and post ``pending`` a window at a time, in order, the posts of one window
        going out while the next one's content is uploaded. False if the pass should stop here
        (a file changed under us, or nothing could go out)."""
        posting: asyncio.Future | None = None
        go_on = True
        try:
            for i in range(0, len(pending), SEND_WINDOW):
                ready, stale = await self._upload(pending[i:i + SEND_WINDOW])
                if posting is not None:
                    await posting  # the previous window's posts, in order, before these
                    posting = None
                if ready:
                    self.state.freeze([(str(uuid.uuid4()), b) for b in split_batches(ready)])
                    posting = asyncio.ensure_future(self._flush())
                if stale or not ready:
                    go_on = False
                    break
                if self.wake.is_set():
                    # Something moved meanwhile (a conflict resolved, a file changed): post what
                    # is frozen, then plan the rest again.
                    break
            if posting is not None:
                await posting
                posting = None
            return go_on
        finally:
            if posting is not None:  # an upload failed: what is frozen goes out next pass
                posting.cancel()
                await asyncio.gather(posting, return_exceptions=True)

    def _pending(self) -> list[Pending]:
        skip = self.busy() | self.held
        return [p for p in self.state.pending(self.rejected) if p.change["path"] not in skip]

    async def _flush(self) -> None:
        for batch in self.state.outbox():
            await self._post(batch)

    async def _post(self, batch: OutboxBatch) -> None:
        self.state.attempt(batch.id)
        try:
            out = await self.client.post_changes(self.project_id, batch.changes, batch.key)
        except ApiError as e:
            if e.status == 409 and e.code == "conflict":
                # Nothing of the batch was appended: keep both versions, then send the rest.
                resolved = await self.on_conflict(batch, list(e.details.get("conflicts") or []))
                self.state.drop(batch.id)
                if not resolved:
                    raise Refused(f"the server refused a batch as a conflict it did not name ({e})") from e
                self.wake.set()
                return
            if e.status == 423 and e.code == "locked":
                self._hold_locked(batch, e)
                return
            err = _classify(e, "posting changes")
            if not isinstance(err, ApiError):
                raise err from e
            self._refused(batch, e)
            return
        self.state.posted(batch, out.get("results") or [], out["last_seq"])
        first = out["results"][0]["seq"] if out["results"] else out["last_seq"]
        log.info("posted %d change(s), seq %d-%d", len(batch.changes), first, out["last_seq"])

    def _hold_locked(self, batch: OutboxBatch, e: ApiError) -> None:
        """Changes to files someone else has locked wait (kept in the index) until the lock goes
        (``release``) or the next heartbeat; the rest of the batch goes out again at once."""
        self.state.drop(batch.id)
        named = 0
        for item in e.details.get("locks") or []:
            index = item.get("index") if isinstance(item, dict) else None
            if isinstance(index, int) and 0 <= index < len(batch.changes):
                path = batch.changes[index]["path"]
                self.held.add(path)
                holder = ((item.get("lock") or {}).get("user") or {}).get("name") or "someone"
                log.warning("%r is locked by %s: the change made here waits until it is released",
                            path, holder)
                named += 1
        if not named:
            raise Refused(f"the server refused a batch as locked without naming a path ({e})")
        self.wake.set()

    def release(self, path: str) -> None:
        """A lock went: a change held back for ``path`` goes out now."""
        if path in self.held:
            self.held.discard(path)
            self.wake.set()

    def _refused(self, batch: OutboxBatch, e: ApiError) -> None:
        """A 4xx for a whole batch: drop it; the next pass re-derives what is still needed."""
        self.state.drop(batch.id)
        if e.code in ("content_missing", "idempotency_key_reused"):
            raise Refused(f"the server refused a batch ({e})")
        index = e.details.get("index")
        bad = [batch.changes[index]] if isinstance(index, int) and 0 <= index < len(
            batch.changes) else batch.changes
        for c in bad:
            self.rejected.add((c["path"], c["hash"]))
            log.error("the server refused %s %r: %s", c["op"], c["path"], e)

    async def _upload(self, pending: list[Pending]) -> tuple[list[dict], bool]:
        """Store the content of every create/update; returns the changes that are ready to post
        (in order) and whether some file changed under us."""
        files = []
        for p in pending:
            if p.change["op"] != "delete":
                f = self.state.local(p.change["path"])
                if f is None or f.hash != p.change["hash"]:
                    return [], True  # the index moved since the plan: plan again
                files.append(f)
        total = sum(f.size for f in files)
        show = self.first_sync or total >= LARGE_TRANSFER
        if show and total:
            self.bars.start(f"uploading {len(files)} file(s)", total)
        failed: set[str] = set()
        slots = asyncio.Semaphore(FILE_CONCURRENCY)
        batch_slots = asyncio.Semaphore(BATCH_CONCURRENCY)
        small = [f for f in files if f.size <= MAX_BATCH_FILE_SIZE]
        large = [f for f in files if f.size > MAX_BATCH_FILE_SIZE]

        async def one(f: LocalFile) -> None:
            async with slots:
                if not await self._upload_one(f, show):
                    failed.add(f.path)

        async def batch(fs: list[LocalFile]) -> None:
            async with batch_slots:
                failed.update(await self._upload_small(fs))
                if show:
                    self.bars.advance(sum(f.size for f in fs))

        try:
            tasks = [asyncio.ensure_future(batch(b))
                     for b in pack((f, f.size) for f in small)]
            tasks += [asyncio.ensure_future(one(f)) for f in large]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.bars.stop()
            self._clear_uploads()
        ready = [p.change for p in pending if p.change["path"] not in failed]
        return ready, bool(failed)

    async def _upload_small(self, files: list[LocalFile]) -> set[str]:
        """Upload small files' content in one request (``content-batch``); returns the paths
        that cannot go out as indexed (changed since they were hashed, or refused)."""
        root = self.state.root
        kept = {f.path: k for f in files if (k := self.kept(f.fspath)) is not None}

        def read() -> tuple[list[tuple[str, bytes]], list[LocalFile]]:
            ok, stale = [], []
            for f in files:
                k = kept.get(f.path)
                if k is not None and k[1] == f.hash and k[0][:3] == (f.size, f.mtime_ns, f.ino):
                    # The bytes the indexer hashed, if the file has not moved since: the stat
                    # check that lets a rescan skip a file, plus the ctime, which no write can
                    # put back.
                    try:
                        st = os.lstat(root / f.fspath)
                    except OSError:
                        stale.append(f)
                        continue
                    if (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) == k[0]:
                        ok.append((f.hash, k[2]))
                        continue
                try:
                    with open(root / f.fspath, "rb") as fh:
                        data = fh.read(MAX_BATCH_FILE_SIZE + 1)
                except OSError:
                    stale.append(f)
                    continue
                if hashlib.sha256(data).hexdigest() != f.hash:
                    stale.append(f)
                else:
                    ok.append((f.hash, data))
            return ok, stale

        contents, stale = await asyncio.to_thread(read)
        bad = {f.path for f in stale}
        for f in stale:
            log.info("%r changed since it was hashed; it will be hashed again", f.path)
            self.state.invalidate(f.path)
            self.on_stale(f.fspath)
        if not contents:
            return bad
        try:
            stored = await self.client.put_small_files(self.project_id, contents)
        except ApiError as e:
            err = _classify(e, f"uploading {len(contents)} small file(s)")
            if not isinstance(err, ApiError):
                raise err from e
            # Read and checked above, so a refusal is about the batch as a whole (quota, a
            # limit): the files are refused until they change, as a single upload would be.
            for f in files:
                if f.path not in bad:
                    self.rejected.add((f.path, f.hash))
                    bad.add(f.path)
            log.error("the server refused the content of %d small file(s): %s",
                      len(contents), e)
            return bad
        sent = sum(len(d) for _, d in contents)
        with self.state.tx() as db:  # one transaction per batch
            for key, amount in (("bytes_uploaded", sent), ("files_uploaded", stored)):
                db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                           " SET value = CAST(value AS INTEGER) + excluded.value", (key, amount))
        return bad

    async def _upload_one(self, f: LocalFile, show: bool) -> bool:
        """Upload one file's missing blocks and its manifest; False if it cannot go out as
        indexed."""
        self.uploads[f.path] = [0, f.size]
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            self.uploads[f.path][0] = done
            if show:
                self.bars.advance(n)
            self._write_uploads()

        try:
            result = await self.client.upload_file(self.project_id, self.state.root / f.fspath,
                                                   manifest=f.manifest(), path=f.path,
                                                   on_progress=progress)
            if result.hash != f.hash:
                raise ContentMismatch(f"now hashes to {result.hash[:12]}...")
        except (ContentMismatch, OSError) as e:
            log.info("%r changed while uploading (%s); it will be hashed again", f.path, e)
            self.state.invalidate(f.path)
            self.on_stale(f.fspath)
            return False
        except ApiError as e:
            err = _classify(e, f"uploading {f.path!r}")
            if not isinstance(err, ApiError):
                raise err from e
            if e.code == "hash_mismatch":
                self.state.invalidate(f.path)
                self.on_stale(f.fspath)
            else:
                self.rejected.add((f.path, f.hash))
                log.error("the server refused the content of %r: %s", f.path, e)
            return False
        finally:
            self.uploads.pop(f.path, None)
            if show:
                self.bars.advance(f.size - done)
        with self.state.tx() as db:
            for key, amount in (("bytes_uploaded", result.uploaded_bytes),
                                ("files_uploaded", 1 if result.uploaded_bytes else 0)):
                db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                           " SET value = CAST(value AS INTEGER) + excluded.value", (key, amount))
        return True

    def _write_uploads(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._progress_written >= PROGRESS_EVERY_S:
            self._progress_written = now
            self.state.set(uploads=[{"path": p, "sent": s, "size": t}
                                    for p, (s, t) in sorted(self.uploads.items())])

    def _clear_uploads(self) -> None:
        self.uploads.clear()
        self._write_uploads(force=True)
