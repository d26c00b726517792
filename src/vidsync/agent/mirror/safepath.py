"""Where a path from the network may be written in a mirror, checked again on this machine.

The server validates every path (``vidsync.changes.normalize_path``); the agent checks again because
a server can be wrong or hostile. On top of the shared rules it refuses what only the local
filesystem can tell: a name longer than it holds, a name Windows reserves (on Windows, or on a
FAT/exFAT/NTFS drive), and, on a case-insensitive filesystem, a name that differs only in case
from one already mirrored.

Writes then go through directory file descriptors opened with ``O_NOFOLLOW`` from the mirror's root
down (``open_parent``): a parent that is a symlink is refused at the moment of use, so a symlink
swapped in after a check still cannot redirect a write outside the mirror.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from vidsync.changes import RESERVED_DIR, normalize_path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# Names Windows cannot hold whatever the directory (matters when the mirror lives on Windows).
_WINDOWS_RESERVED = re.compile(r"(?i)^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$")
_WINDOWS_BAD_CHARS = set('<>:"|?*')
_WINDOWS_FILESYSTEMS = {"vfat", "msdos", "exfat", "ntfs", "ntfs3", "fuseblk"}


class UnsafePath(ValueError):
    """A path the mirror refuses to write: it is reported and skipped, never written."""


class PathPolicy:
    """The local filesystem's rules for the names a mirror may create under ``root``."""

    def __init__(self, root: str, case_insensitive: bool, windows: bool | None = None) -> None:
        self.root = root
        self.case_insensitive = case_insensitive
        self.windows = windows_names_apply(root) if windows is None else windows
        self.name_max = _pathconf(root, "PC_NAME_MAX", 255)
        self.path_max = _pathconf(root, "PC_PATH_MAX", 4096)

    def check(self, path: object) -> str:
        """The NFC form of ``path`` if this machine may write it under the root, else ``UnsafePath``."""
        try:
            norm = normalize_path(path)
        except ValueError as e:
            raise UnsafePath(str(e)) from None
        if len(os.fsencode(os.path.join(self.root, norm))) >= self.path_max:
            raise UnsafePath(f"path is longer than this filesystem allows ({self.path_max} bytes)")
        for segment in norm.split("/"):
            if len(os.fsencode(segment)) > self.name_max:
                raise UnsafePath(f"name {segment[:40]!r}... is longer than this filesystem allows")
            if self.windows and (_WINDOWS_RESERVED.match(segment) or segment[-1] in ". "
                                 or _WINDOWS_BAD_CHARS.intersection(segment)):
                raise UnsafePath(f"name {segment!r} cannot be created on Windows")
        if self.case_insensitive and norm.split("/", 1)[0].casefold() == RESERVED_DIR:
            raise UnsafePath(f"'{RESERVED_DIR}/' is reserved for the agents' own state")
        return norm

    def fold(self, path: str) -> str:
        """The key under which this filesystem stores ``path``: two paths with one key collide."""
        return path.casefold() if self.case_insensitive else path


def windows_names_apply(root: str) -> bool:
    """True on Windows, and for a folder on a FAT, exFAT or NTFS volume (an editor's external
    drive), where Windows' name rules hold whatever the system."""
    if sys.platform == "win32":
        return True
    return _fs_type(root) in _WINDOWS_FILESYSTEMS


def _fs_type(root: str) -> str | None:
    """The filesystem type of the mount holding ``root``, from Linux's mountinfo."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(root)
    best, fstype = "", None
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        mount = parts[4].replace("\\040", " ")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, rest.split()[0]
    return fstype


def _pathconf(root: str, name: str, default: int) -> int:
    try:
        return os.pathconf(root, name)
    except (OSError, ValueError, AttributeError):
        return default


def detect_case_insensitive(probe_dir: str) -> bool:
    """True if the filesystem holding ``probe_dir`` folds case (macOS and Windows defaults)."""
    probe = os.path.join(probe_dir, "CaseProbe.tmp")
    with open(probe, "w"):
        pass
    try:
        return os.path.exists(os.path.join(probe_dir, "caseprobe.tmp"))
    finally:
        os.unlink(probe)


@contextmanager
def open_parent(root_fd: int, path: str, create: bool) -> Iterator[int | None]:
    """A descriptor of the directory that holds ``path`` (already checked), walked from
    ``root_fd`` one segment at a time without following symlinks. Missing directories are made
    when ``create``; otherwise None is yielded for a parent that does not exist."""
    fd = os.dup(root_fd)
    try:
        for segment in path.split("/")[:-1]:
            try:
                nxt = os.open(segment, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    yield None
                    return
                try:
                    os.mkdir(segment, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile (or a dangling symlink: the open below refuses it)
                nxt = _open_dir(segment, fd, path)
            except OSError as e:
                raise _refusal(e, segment, path) from None
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


class Parents:
    """``open_parent`` for many paths at once: each folder is walked to (from ``root_fd``, one
    segment at a time, never following a symlink) once, and its descriptor kept until ``close``.
    ``made`` lists the descriptors of folders in which a folder was created."""

    def __init__(self, root_fd: int, create: bool) -> None:
        self.root_fd = root_fd
        self.create = create
        # A folder's descriptor, None (missing), the segment refused there, or the error met.
        self._fds: dict[str, int | None | str | OSError] = {}
        self.made: set[int] = set()

    def __enter__(self) -> Parents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds.values():
            if isinstance(fd, int):
                os.close(fd)
        self._fds.clear()

    def of(self, path: str) -> int | None:
        """The descriptor of the folder holding ``path`` (already checked); None if it does not
        exist and folders are not made. ``UnsafePath`` for a parent that is a symlink or a file."""
        folder = path.rpartition("/")[0]
        return self.root_fd if not folder else self._folder(folder, path)

    def _folder(self, folder: str, path: str) -> int | None:
        known = self._fds.get(folder, False)
        if known is False:
            up, _, segment = folder.rpartition("/")
            parent = self.root_fd if not up else self._folder(up, path)
            try:
                known = None if parent is None else self._open(segment, parent, path)
            except UnsafePath:  # the same answer for every path below it, naming each path
                known = segment
            except OSError as e:
                known = e
            self._fds[folder] = known
        if isinstance(known, str):
            raise UnsafePath(f"{path!r}: parent {known!r} is a symlink or not a directory")
        if isinstance(known, OSError):
            raise known
        return known

    def _open(self, segment: str, parent: int, path: str) -> int | None:
        try:
            return os.open(segment, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not self.create:
                return None
        except OSError as e:
            raise _refusal(e, segment, path) from None
        try:
            os.mkdir(segment, 0o777, dir_fd=parent)
            self.made.add(parent)
        except FileExistsError:
            pass  # made meanwhile (or a dangling symlink: the open below refuses it)
        return _open_dir(segment, parent, path)


def _open_dir(segment: str, dir_fd: int, path: str) -> int:
    try:
        return os.open(segment, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        raise _refusal(e, segment, path) from None


def _refusal(e: OSError, segment: str, path: str) -> Exception:
    if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return UnsafePath(f"{path!r}: parent {segment!r} is a symlink or not a directory")
    return e
