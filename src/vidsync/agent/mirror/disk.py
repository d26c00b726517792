"""Looking at and changing paths of a mirror on disk, through descriptors opened from its root.

Every function takes paths already checked by ``PathPolicy`` and reaches them with ``open_parent``
(``Parents`` for many paths), so no operation here follows a symlink out of the mirror. The
functions block (they hash, fsync, rename): callers run them on a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vidsync.agent.mirror.safepath import Parents, UnsafePath, open_parent
from vidsync.agent.mirror.state import LocalFile

HASH_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Seen:
    """What is at a path: nothing (``st`` None), a regular file, or something else. ``blocked``:
    nothing reachable, because a parent is a symlink or a file."""

    st: os.stat_result | None
    blocked: bool = False

    @property
    def absent(self) -> bool:
        return self.st is None

    @property
    def regular(self) -> bool:
        return self.st is not None and stat.S_ISREG(self.st.st_mode)

    def same_as(self, other: Seen) -> bool:
        if self.st is None or other.st is None:
            return self.st is other.st
        return _sig(self.st) == _sig(other.st)


def _sig(st: os.stat_result) -> tuple:
    return st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns


def look(root_fd: int, path: str) -> Seen:
    """Stat ``path`` without following a symlink (at the end or on the way). Behind a parent
    that is a symlink or a file, the path is absent as far as the mirror is concerned."""
    return look_many(root_fd, [path])[0]


def look_many(root_fd: int, paths: list[str]) -> list[Seen]:
    """``look`` at each path, walking to each folder once."""
    with Parents(root_fd, create=False) as parents:
        return [_look(parents, path) for path in paths]


def _look(parents: Parents, path: str) -> Seen:
    try:
        parent = parents.of(path)
    except UnsafePath:
        return Seen(None, blocked=True)
    if parent is None:
        return Seen(None)
    try:
        return Seen(os.stat(_name(path), dir_fd=parent, follow_symlinks=False))
    except FileNotFoundError:
        return Seen(None)


def hash_file(root_fd: int, path: str) -> str | None:
    """SHA-256 of the regular file at ``path``; None if it is gone or is not a regular file."""
    with open_parent(root_fd, path, create=False) as parent:
        if parent is None:
            return None
        try:
            fd = os.open(_name(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP, errno.EISDIR):
                return None
            raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return hashlib.file_digest(f, "sha256").hexdigest()


def hash_path(file_path: str) -> str:
    with open(file_path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def finish_temp(tmp_path: str, mtime_ms: int | None) -> None:
    """Make the downloaded temp file durable before it is renamed into place."""
    fd = os.open(tmp_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _finish(fd, mtime_ms)
    finally:
        os.close(fd)


def _finish(fd: int, mtime_ms: int | None) -> None:
    """A temp file's last steps before its rename: the owner's mtime, then fsync."""
    if mtime_ms is not None:
        os.utime(fd, ns=(mtime_ms * 1_000_000, mtime_ms * 1_000_000))
    os.fsync(fd)


def write_temp(tmp_dir_fd: int, tmp_name: str, data: bytes, mtime_ms: int | None) -> None:
    """Write ``data`` (already verified) into a temp file, durable before it is renamed."""
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666, dir_fd=tmp_dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        _finish(fd, mtime_ms)
    finally:
        os.close(fd)


def write_temps(tmp_dir_fd: int, items: list[tuple[str, bytes, int | None]],
                threads: int) -> list[OSError | None]:
    """``write_temp`` for each ``(temp name, data, mtime)``, on ``threads`` threads at once: the
    filesystem commits fsyncs that wait together in one journal commit. Each item's error, or
    None."""
    out: list[OSError | None] = [None] * len(items)

    def run(first: int, step: int) -> None:
        for i in range(first, len(items), step):
            try:
                write_temp(tmp_dir_fd, *items[i])
            except OSError as e:
                out[i] = e

    n = max(1, min(threads, len(items)))
    with ThreadPoolExecutor(n) as pool:
        for done in [pool.submit(run, first, n) for first in range(n)]:
            done.result()
    return out


def install(root_fd: int, tmp_dir_fd: int, items: list[tuple[str, str, Seen, str]]
            ) -> list[LocalFile | None | OSError | UnsafePath]:
    """For each ``(temp name, path, what was seen there, content hash)``: unless the path changed
    since it was seen (then None: a file saved there meanwhile is never replaced), rename the
    finished temp file over it (making its folders). Then every folder written in, and every
    folder a folder was made in, is fsynced once: after a crash each path holds either the old
    file or the whole new one, and nothing is returned before it is durable. Each item's record,
    None, or the error that stopped it."""
    out: list[LocalFile | None | OSError | UnsafePath] = []
    with Parents(root_fd, create=True) as parents:
        written: set[int] = set()
        for tmp_name, path, seen, digest in items:
            try:
                out.append(_install(parents, tmp_dir_fd, tmp_name, path, seen, digest, written))
            except (OSError, UnsafePath) as e:
                out.append(e)
        for fd in written | parents.made:
            os.fsync(fd)
    return out


def _install(parents: Parents, tmp_dir_fd: int, tmp_name: str, path: str, seen: Seen,
             digest: str, written: set[int]) -> LocalFile | None:
    if not _look(parents, path).same_as(seen):
        return None
    parent = parents.of(path)
    assert parent is not None
    name = _name(path)
    try:
        os.rename(tmp_name, name, src_dir_fd=tmp_dir_fd, dst_dir_fd=parent)
    except IsADirectoryError:
        raise FileExistsError(errno.EISDIR, f"a folder is in the way of {path!r}") from None
    written.add(parent)
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    return LocalFile(path, digest, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def adopt(path: str, digest: str, seen: Seen) -> LocalFile:
    """The record for a file found on disk that already holds the owner's content."""
    assert seen.st is not None
    return LocalFile(path, digest, seen.st.st_size, seen.st.st_mtime_ns, seen.st.st_ino,
                     seen.st.st_ctime_ns)


def remove_many(root_fd: int, files: list[tuple[str, Seen]]) -> list[str]:
    """Delete these files, each only if it is still what its ``Seen`` says (else it is left
    alone), then the folders they leave empty, deepest first (the owner's side only tracks
    files, so an emptied folder there is gone too). Each folder touched is fsynced once, after
    all of it, not once per file. Returns the paths removed (or found gone)."""
    removed: list[str] = []
    touched: set[int] = set()
    with Parents(root_fd, create=False) as parents:
        for path, seen in files:
            now = _look(parents, path)
            if not now.same_as(seen) or now.blocked:
                continue
            if now.st is not None:
                parent = parents.of(path)
                assert parent is not None  # the file was just seen in it
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_name(path), dir_fd=parent)
                touched.add(parent)
            removed.append(path)
        folders = {"/".join(p.split("/")[:depth]) for p in removed
                   for depth in range(1, p.count("/") + 1)}
        for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):
            try:
                parent = parents.of(folder)
            except UnsafePath:
                continue
            if parent is None:
                continue
            try:
                os.rmdir(_name(folder), dir_fd=parent)
            except OSError:
                continue  # not empty (or not a folder): kept
            touched.add(parent)
        for fd in touched:
            os.fsync(fd)
    return removed


def move_aside(root_fd: int, path: str, trash_fd: int, trash_name: str) -> bool:
    """Move whatever is at ``path`` (a file, a symlink, a folder) into the trash folder."""
    with open_parent(root_fd, path, create=False) as parent:
        if parent is None:
            return False
        try:
            os.rename(_name(path), trash_name, src_dir_fd=parent, dst_dir_fd=trash_fd)
        except FileNotFoundError:
            return False
        os.fsync(parent)
        return True


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]
