"""Applying one path of the owner's folder to the mirror: download, verify, fsync, rename; or delete.

The order is what makes it safe to stop at any moment. Content lands in a temp file under
``.vidsync/tmp``; its size and SHA-256 are checked against the change (never trusting the server's
word), it is fsynced, and only then renamed over the path, under a lock shared with ``vidsync
revert``. A file on disk that is not what this agent last wrote there is a local edit: it is
recorded and left alone, never overwritten or deleted. A file that already holds the owner's
content is simply adopted, so an apply repeated after a crash downloads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from vidsync.agent.mirror import disk
from vidsync.agent.mirror.localedits import OURS, UNCHANGED, LocalEdits
from vidsync.agent.mirror.lock import ApplyLock
from vidsync.agent.mirror.safepath import PathPolicy, UnsafePath
from vidsync.agent.mirror.state import LocalFile, MirrorState, RemoteFile

# fetch(row, temp file path, a local file holding the previous version or None, progress(bytes))
# -> the SHA-256 of what it wrote, computed as it wrote (None: the applier hashes the temp file).
Fetch = Callable[[RemoteFile, str, str | None, Callable[[int], None]], Awaitable[str | None]]
Report = Callable[[str, str, str], None]  # (what, path, detail)
TMP_DIR = "tmp"


class ContentRejected(Exception):
    """The server sent content that is not the file the change names: never installed."""


class Applier:
    """Brings single paths of a mirror in line with the owner's folder."""

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
        try:
            if self.policy.check(row.path) != row.path:
                raise UnsafePath("path is not in Unicode NFC form")
        except UnsafePath as e:
            if row.hash is not None:
                self.state.fail(row.path, row.hash, f"refused: {e}", permanent=True)
                self.report("refused", row.path, str(e))
                return "refused"
            self.state.drop_local(row.path)  # nothing can have been written there
            return UNCHANGED
        if row.hash is None:
            return await self._delete(row)
        return await self._install(row, progress)

    async def _install(self, row: RemoteFile, progress: Callable[[int], None]) -> str:
        path = row.path
        clash = [p for p in self.state.locals_folding_to(self.policy.fold(path)) if p != path]
        if clash:
            reason = f"differs only in case from {clash[0]!r} on this case-insensitive filesystem"
            self.state.fail(path, row.hash, f"refused: {reason}", permanent=True)
            self.report("refused", path, reason)
            return "refused"
        verdict, seen = await self.edits.examine(path)
        if verdict != OURS:
            return verdict
        if seen.blocked:
            raise UnsafePath(f"{path!r}: a parent folder is a symlink or a file")
        local = self.state.local(path)
        reuse = str(self.root / path) if local is not None else None
        tmp_name = self.temp_name(row)
        tmp_path = str(self.tmp_dir / tmp_name)
        try:
            written = await self.fetch(row, tmp_path, reuse, progress)
            await asyncio.to_thread(self._verify, row, tmp_path, written)
            async with self.lock.held():
                current = self.state.remote(path)
                if current is None or current.hash != row.hash:
                    return "superseded"
                # Look and rename in one go, on one thread: a file saved there a moment ago (a
                # writer in this folder) is never replaced. A rename that a cancelled task did
                # not get to record is adopted on the next look (same content as the server's).
                record = await asyncio.to_thread(self._install_unless_changed, seen, tmp_name,
                                                 path, row.hash)
                if record is None:
                    return "superseded"  # changed on disk meanwhile: examined again next round
                self.state.set_local(record, self.policy.fold(path))
        except ContentRejected:
            # Never resume from bad bytes. Content refused before any byte was written (a
            # manifest that does not add up) left no temp file: the refusal is what to report.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name, dir_fd=self.tmp_fd)
            raise
        return "updated" if local is not None else "created"

    def _install_unless_changed(self, seen: disk.Seen, tmp_name: str, path: str,
                                digest: str) -> LocalFile | None:
        if not disk.look(self.root_fd, path).same_as(seen):
            return None
        return disk.install(self.root_fd, self.tmp_fd, tmp_name, path, digest)

    def _remove_unless_changed(self, seen: disk.Seen, path: str) -> bool:
        if not disk.look(self.root_fd, path).same_as(seen):
            return False
        disk.remove(self.root_fd, path)
        return True

    def _verify(self, row: RemoteFile, tmp_path: str, written: str | None) -> None:
        size = os.stat(tmp_path).st_size
        if row.size is not None and size != row.size:
            raise ContentRejected(f"{row.path}: got {size} bytes, the change says {row.size}")
        # The fetcher hashes what it writes as it writes it, in order (no second pass).
        digest = written if written is not None else disk.hash_path(tmp_path)
        if digest != row.hash:
            raise ContentRejected(f"{row.path}: content hash {digest[:12]}... is not {row.hash[:12]}...")
        disk.finish_temp(tmp_path, row.mtime)

    async def _delete(self, row: RemoteFile) -> str:
        path = row.path
        if self.state.local(path) is None:
            self.state.drop_local(path)  # never written here: nothing to remove
            return UNCHANGED
        verdict, seen = await self.edits.examine(path)
        if verdict != OURS:
            return verdict
        async with self.lock.held():
            if await asyncio.to_thread(self._remove_unless_changed, seen, path):
                self.state.drop_local(path)
                return "deleted"
        return "superseded"
