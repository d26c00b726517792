"""Applying paths of the owner's folder to the mirror: download, verify, fsync, rename; or delete.

The order is what makes it safe to stop at any moment. Content lands in a temp file under
``.vidsync/tmp``; its size and SHA-256 are checked against the change (never trusting the server's
word), it is fsynced, and only then renamed over the path, under a lock shared with ``vidsync
revert``; the folder is fsynced, and only then is the file recorded. A file on disk that is not
what this agent last wrote there is a local edit: it is recorded and left alone, never overwritten
or deleted. A file that already holds the owner's content is simply adopted, so an apply repeated
after a crash downloads nothing.

Small files go through the same steps many at a time (``apply_small``): examined under one hold of
the lock, their temp files written and fsynced side by side, renamed in one go, each folder fsynced
once, one transaction. Each file's outcome is its own: one refused file does not stop the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from vidsync.agent.mirror import disk
from vidsync.agent.mirror.localedits import OURS, UNCHANGED, LocalEdits
from vidsync.agent.mirror.lock import ApplyLock
from vidsync.agent.mirror.safepath import PathPolicy, UnsafePath
from vidsync.agent.mirror.state import LocalFile, MirrorState, RemoteFile

# What applying one path came to (see ``Applier.apply``), or the error that stopped it.
Outcome = str | Exception
# fetch(row, temp file path, a local file holding the previous version or None, progress(bytes))
# -> the SHA-256 of what it wrote, computed as it wrote (None: the applier hashes the temp file).
Fetch = Callable[[RemoteFile, str, str | None, Callable[[int], None]], Awaitable[str | None]]
Report = Callable[[str, str, str], None]  # (what, path, detail)
TMP_DIR = "tmp"
# Temp files written and fsynced at once (ext4 commits fsyncs that wait together as one).
WRITE_THREADS = 32


class ContentRejected(Exception):
    """The server sent content that is not the file the change names: never installed."""


@dataclass(frozen=True, slots=True)
class _Staged:
    """A file whose content is (or is being) written to its temp file, waiting to be renamed."""

    row: RemoteFile
    seen: disk.Seen  # what was at its path when it was examined
    tmp_name: str
    replaces: bool  # a file this agent wrote is there: the outcome is ``updated``


def _raise(outcome: Outcome) -> str:
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


class Applier:
    """Brings the paths of a mirror in line with the owner's folder."""

    def __init__(self, root: str | os.PathLike, state: MirrorState, policy: PathPolicy,
                 fetch: Fetch, report: Report) -> None:
        self.root = Path(root)
        self.state = state
        self.policy = policy
        self.fetch = fetch
        self.report = report
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.lock = ApplyLock(state.dir / "apply.lock")
        self.edits = LocalEdits(self.root, self.root_fd, state, policy, self.lock, report)
        self.tmp_dir = state.dir / TMP_DIR
        self.tmp_dir.mkdir(mode=0o700, exist_ok=True)
        self.tmp_fd = os.open(self.tmp_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        self.lock.close()
        os.close(self.tmp_fd)
        os.close(self.root_fd)

    @staticmethod
    def temp_name(row: RemoteFile) -> str:
        """One temp file per (path, content): a download cut off by a crash resumes from it."""
        return hashlib.sha256(f"{row.path}\0{row.hash}".encode()).hexdigest()[:32] + ".part"

    def clear_stale_temp(self) -> None:
        """Drop temp files no pending change will resume (only ever partial downloads)."""
        keep = {self.temp_name(r) for r in self.state.pending(limit=1_000_000) if r.hash}
        for entry in self.tmp_dir.iterdir():
            if entry.name not in keep:
                entry.unlink(missing_ok=True)

    async def apply(self, row: RemoteFile, progress: Callable[[int], None] = lambda n: None) -> str:
        """Make ``row.path`` on disk what the owner has. Returns what happened: ``created``,
        ``updated``, ``deleted``, ``unchanged``, ``held`` (a local edit), ``refused`` or
        ``superseded`` (something changed meanwhile; the path stays pending)."""
        if row.hash is None:
            return (await self.delete_many([row]))[row.path]
        return _raise(await self._install(row, progress))

    async def delete_many(self, rows: list[RemoteFile]) -> dict[str, str]:
        """Apply many deletions together, as ``apply`` does one: examined under one hold of
        the lock, removed under another (each still what was examined), every folder touched
        fsynced once, recorded in one transaction. Returns each path's outcome."""
        outcomes: dict[str, str] = {}
        todo = []
        unwritten = []  # nothing was (or can have been) written here: only recorded
        for row in rows:
            try:
                safe = self.policy.check(row.path) == row.path
            except UnsafePath:
                safe = False
            if not safe or self.state.local(row.path) is None:
                unwritten.append(row.path)
                outcomes[row.path] = UNCHANGED
            else:
                todo.append(row.path)
        if unwritten:
            self.state.drop_locals(unwritten)
        ours = []
        for path, (verdict, seen) in zip(todo, await self.edits.examine_many(todo), strict=True):
            if verdict == OURS:
                ours.append((path, seen))
            else:
                outcomes[path] = verdict
        if ours:
            async with self.lock.held():
                removed = await asyncio.to_thread(disk.remove_many, self.root_fd, ours)
                self.state.drop_locals(removed)
            outcomes.update((path, "superseded") for path, _ in ours)
            outcomes.update((path, "deleted") for path in removed)
        return outcomes

    async def apply_small(self, files: list[tuple[RemoteFile, bytes]]) -> dict[str, Outcome]:
        """Install many small files whose bytes are at hand, the same way as ``apply`` but
        together: examined under one lock hold, each checked against its size and SHA-256 and
        written to its temp file, the temp files fsynced side by side, then renamed and recorded
        in one go. Returns each path's outcome, or the error that stopped it (for that path
        only)."""
        data = {row.path: content for row, content in files}
        outcomes, ready = await self._examine([row for row, _ in files])
        staged = [_Staged(row, seen, self.temp_name(row), replaces) for row, seen, replaces in ready]
        written = await asyncio.to_thread(
            self._write_verified, [(s, data[s.row.path]) for s in staged])
        outcomes.update((s.row.path, e) for s, e in zip(staged, written, strict=True) if e)
        outcomes.update(await self._commit(
            [s for s, e in zip(staged, written, strict=True) if e is None]))
        return outcomes

    async def _install(self, row: RemoteFile, progress: Callable[[int], None]) -> Outcome:
        outcomes, ready = await self._examine([row])
        if not ready:
            return outcomes[row.path]
        _, seen, replaces = ready[0]
        staged = _Staged(row, seen, self.temp_name(row), replaces)
        tmp_path = str(self.tmp_dir / staged.tmp_name)
        reuse = str(self.root / row.path) if replaces else None
        try:
            written = await self.fetch(row, tmp_path, reuse, progress)
            await asyncio.to_thread(self._verify, row, tmp_path, written)
        except ContentRejected:
            # Never resume from bad bytes. Content refused before any byte was written (a
            # manifest that does not add up) left no temp file: the refusal is what to report.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged.tmp_name, dir_fd=self.tmp_fd)
            raise
        return (await self._commit([staged]))[row.path]

    async def _examine(self, rows: list[RemoteFile]
                       ) -> tuple[dict[str, Outcome], list[tuple[RemoteFile, disk.Seen, bool]]]:
        """Which of ``rows`` (files to write) may be written now: ``(row, what is at its path,
        whether it replaces a file this agent wrote)``, and the others' outcomes."""
        outcomes: dict[str, Outcome] = {}
        admitted = []
        taken = self.state.locals_folding_to([self.policy.fold(r.path) for r in rows]) \
            if self.policy.case_insensitive else {}
        folds: set[str] = set()
        for row in rows:
            try:
                if self.policy.check(row.path) != row.path:
                    raise UnsafePath("path is not in Unicode NFC form")
                fold = self.policy.fold(row.path)
                clash = [p for p in taken.get(fold, ()) if p != row.path]
                if clash:
                    raise UnsafePath(f"differs only in case from {clash[0]!r} on this "
                                     "case-insensitive filesystem")
            except UnsafePath as e:
                self.state.fail(row.path, row.hash, f"refused: {e}", permanent=True)
                self.report("refused", row.path, str(e))
                outcomes[row.path] = "refused"
                continue
            if fold in folds:  # two of these fold to one name: the second is refused next round
                outcomes[row.path] = "superseded"
                continue
            folds.add(fold)
            admitted.append(row)
        examined = await self.edits.examine_many([r.path for r in admitted])
        ready = []
        for row, (verdict, seen) in zip(admitted, examined, strict=True):
            if verdict != OURS:
                outcomes[row.path] = verdict
            elif seen.blocked:
                outcomes[row.path] = UnsafePath(f"{row.path!r}: a parent folder is a symlink or a file")
            else:
                ready.append((row, seen))
        local = self.state.locals_of([row.path for row, _ in ready])
        return outcomes, [(row, seen, row.path in local) for row, seen in ready]

    async def _commit(self, staged: list[_Staged]) -> dict[str, Outcome]:
        """Rename finished, fsynced temp files into place and record them, under one hold of the
        lock. Each is renamed only if its change is still the latest and its path holds what
        was seen there (a file saved there a moment ago, by a writer in this folder, is never
        replaced); look and rename happen in one go, on one thread. Nothing is recorded before
        the renames are durable. A rename that a cancelled task did not get to record is adopted
        on the next look (same content as the server's)."""
        outcomes: dict[str, Outcome] = {}
        if not staged:
            return outcomes
        async with self.lock.held():
            current = self.state.remotes([s.row.path for s in staged])
            live = []
            for s in staged:
                now = current.get(s.row.path)
                if now is None or now.hash != s.row.hash:
                    outcomes[s.row.path] = "superseded"
                else:
                    live.append(s)
            results = await asyncio.to_thread(
                disk.install, self.root_fd, self.tmp_fd,
                [(s.tmp_name, s.row.path, s.seen, s.row.hash) for s in live])
            records = []
            for s, result in zip(live, results, strict=True):
                if result is None:
                    outcomes[s.row.path] = "superseded"  # changed on disk: examined again next round
                elif isinstance(result, LocalFile):
                    records.append((result, self.policy.fold(s.row.path)))
                    outcomes[s.row.path] = "updated" if s.replaces else "created"
                else:
                    outcomes[s.row.path] = result
            self.state.set_locals(records)
        return outcomes

    def _write_verified(self, files: list[tuple[_Staged, bytes]]) -> list[Exception | None]:
        """Check each file's bytes against its change, then write the good ones to their temp
        files, fsynced side by side. Each file's error, or None."""
        out: list[Exception | None] = []
        good = []
        for s, data in files:
            row = s.row
            if row.size is not None and len(data) != row.size:
                out.append(ContentRejected(f"{row.path}: got {len(data)} bytes, the change says "
                                           f"{row.size}"))
            elif (digest := hashlib.sha256(data).hexdigest()) != row.hash:
                out.append(ContentRejected(f"{row.path}: content hash {digest[:12]}... is not "
                                           f"{row.hash[:12]}..."))
            else:
                out.append(None)
                good.append((len(out) - 1, (s.tmp_name, data, row.mtime)))
        errors = disk.write_temps(self.tmp_fd, [item for _, item in good], WRITE_THREADS)
        for (i, _), error in zip(good, errors, strict=True):
            out[i] = error
        return out

    def _verify(self, row: RemoteFile, tmp_path: str, written: str | None) -> None:
        size = os.stat(tmp_path).st_size
        if row.size is not None and size != row.size:
            raise ContentRejected(f"{row.path}: got {size} bytes, the change says {row.size}")
        # The fetcher hashes what it writes as it writes it, in order (no second pass).
        digest = written if written is not None else disk.hash_path(tmp_path)
        if digest != row.hash:
            raise ContentRejected(f"{row.path}: content hash {digest[:12]}... is not {row.hash[:12]}...")
        disk.finish_temp(tmp_path, row.mtime)

