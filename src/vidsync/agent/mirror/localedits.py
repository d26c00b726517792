"""Local edits: anything in a mirror that this agent did not put there. Found, recorded, never sent.

A mirror is receive-only. A path whose disk state is not what the agent last wrote (a file changed,
added or deleted by someone on this machine) is a local edit: it is recorded in the state database
(``vidsync status`` lists it), reported once, and the agent leaves that path alone until ``vidsync
revert`` restores the owner's version. A file that holds the owner's content anyway (a crash right
after the rename, or a user who copied the right file in) is adopted rather than reported.

Edits are found three ways: before every apply (``examine``), by a scan of the whole folder at start
and every few minutes (``scan``), and as they happen through filesystem notifications (``watch``).
Stat is compared first; content is hashed only when the stat differs.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Container

import watchfiles

from vidsync.agent.mirror import disk
from vidsync.agent.mirror.lock import ApplyLock
from vidsync.agent.mirror.safepath import PathPolicy, UnsafePath
from vidsync.agent.mirror.state import LocalFile, MirrorState
from vidsync.changes import RESERVED_DIR

# examine's verdicts
OURS = "ours"  # the disk holds what the agent last wrote there (or nothing, where it wrote nothing)
UNCHANGED = "unchanged"  # the disk already holds what the owner has now
HELD = "held"  # a local edit: recorded and left alone
# Paths examined under one hold of the apply lock by a scan.
SCAN_BATCH = 500


class LocalEdits:
    def __init__(self, root: str | os.PathLike, root_fd: int, state: MirrorState, policy: PathPolicy,
                 lock: ApplyLock, report: Callable[[str, str, str], None]) -> None:
        self.root = os.fspath(root)
        self.real_root = os.path.realpath(self.root)
        self.root_fd = root_fd
        self.state = state
        self.policy = policy
        self.lock = lock
        self.report = report

    async def examine(self, path: str) -> tuple[str, disk.Seen]:
        """Compare ``path`` on disk with what the agent wrote and what the owner has."""
        return (await self.examine_many([path]))[0]

    async def examine_many(self, paths: list[str]) -> list[tuple[str, disk.Seen]]:
        """``examine`` each path, under one hold of the lock: the records are read together and
        the disk is looked at in one go (each folder walked to once)."""
        async with self.lock.held():
            local, remote = self.state.locals_of(paths), self.state.remotes(paths)
            edited = self.state.edited(paths)
            seen = await asyncio.to_thread(disk.look_many, self.root_fd, paths)
            out = []
            for path, st in zip(paths, seen, strict=True):
                want = remote[path].hash if path in remote else None
                out.append((await self._judge(path, local.get(path), want, st, path in edited), st))
            return out

    async def _judge(self, path: str, local: LocalFile | None, want: str | None, seen: disk.Seen,
                     edited: bool) -> str:
        if seen.absent and local is None:
            self._clear(path, edited)
            return OURS
        if seen.regular and local is not None and local.matches(seen.st):
            self._clear(path, edited)
            return UNCHANGED if local.hash == want else OURS
        if seen.absent and want is None:
            self.state.drop_local(path)  # the owner deleted what was deleted here too
            self._clear(path, edited)
            return UNCHANGED
        if seen.st is not None and stat.S_ISDIR(seen.st.st_mode) and local is None and want is None:
            return OURS  # a folder where no file is meant to be: nothing to say
        if seen.regular:
            found = await asyncio.to_thread(disk.hash_file, self.root_fd, path)
            if found is not None and (found == want or (local is not None and found == local.hash)):
                # Same content, new stat (a crash before the record, a touch, a copy): adopt it.
                self.state.set_local(disk.adopt(path, found, seen), self.policy.fold(path))
                self._clear(path, edited)
                return UNCHANGED if found == want else OURS
        kind = "added" if local is None else "deleted" if seen.absent else "modified"
        if self.state.set_edit(path, kind):
            self.report("local-edit", path, kind)
        return HELD

    def _clear(self, path: str, edited: bool) -> None:
        if edited and self.state.clear_edit(path):
            self.report("edit-gone", path, "")

    async def scan(self) -> None:
        """Examine every file on disk and every file the agent wrote."""
        on_disk = await asyncio.to_thread(self._walk)
        paths = []
        for path in sorted(on_disk | set(self.state.all_local()) | set(self.state.edits())):
            try:
                if self.policy.check(path) != path:
                    raise UnsafePath("not NFC")
            except UnsafePath:
                continue  # a name the owner's side could never send: not ours to judge
            paths.append(path)
        for i in range(0, len(paths), SCAN_BATCH):  # the lock is let go between batches
            await self.examine_many(paths[i:i + SCAN_BATCH])

    def _walk(self) -> set[str]:
        """Relative paths of the files and symlinks under the root, ``.vidsync/`` aside."""
        found: set[str] = set()
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                entries = list(os.scandir(os.path.join(self.root, rel) if rel else self.root))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for entry in entries:
                child = f"{rel}/{entry.name}" if rel else entry.name
                if child == RESERVED_DIR:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(child)
                else:
                    found.add(child)
        return found

    async def watch(self, busy: Container[str], stop: asyncio.Event) -> None:
        """Examine paths as the filesystem reports them changed, until ``stop`` is set. Paths in
        ``busy`` are being written by the agent right now and are looked at on the next change."""
        prefix = os.path.join(self.real_root, "")
        reserved = os.path.join(prefix, RESERVED_DIR)

        def wanted(change: watchfiles.Change, path: str) -> bool:
            return not (path == reserved or path.startswith(reserved + os.sep))

        async for changes in watchfiles.awatch(self.root, watch_filter=wanted, stop_event=stop,
                                               debounce=400, step=50, recursive=True):
            for _, abs_path in sorted(changes):
                if not abs_path.startswith(prefix):
                    continue
                rel = abs_path[len(prefix):].replace(os.sep, "/")
                # A folder moved or deleted at once is one notice: look at what it held too.
                for path in [rel, *self.state.local_paths_under(rel)]:
                    if path in busy:
                        continue
                    try:
                        if self.policy.check(path) == path:
                            await self.examine(path)
                    except UnsafePath:
                        continue
