"""Walk the shared folder: regular files only, symlinks never followed, ignore rules applied.

Paths leave here in the two forms the agent needs: ``path``, the NFC ``/``-separated name the
server knows, and ``fspath``, the name on disk relative to the root (they differ for NFD names).
A name the server would refuse (``vidsync.changes.normalize_path``) is skipped with a warning
rather than sent, so one odd file cannot block the rest.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vidsync.agent.share.ignore import IgnoreRules
from vidsync.changes import RESERVED_DIR, normalize_path

log = logging.getLogger("vidsync.share")


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    fspath: str
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int = -1  # not part of ``sig``: only the upload of kept bytes checks it

    @property
    def sig(self) -> tuple[int, int, int]:
        """What must stay the same for the file to count as unchanged."""
        return self.size, self.mtime_ns, self.ino


_warned: set[str] = set()


def server_path(fspath: str) -> str | None:
    """The NFC path for a relative on-disk name, or None (warned once) if the server would refuse
    it. The agents' own ``.vidsync/`` is skipped without a word."""
    if fspath.split("/", 1)[0] == RESERVED_DIR:
        return None
    try:
        return normalize_path(fspath.replace(os.sep, "/"))
    except ValueError as e:
        if fspath not in _warned:
            _warned.add(fspath)
            log.warning("not shared: %r: %s", fspath, e)
        return None


def walk(root: Path, rules: IgnoreRules, start: str = "") -> Iterator[Entry]:
    """Every shareable file at or under ``start`` (a relative on-disk directory, "" for all)."""
    stack = [start]
    while stack:
        rel_dir = stack.pop()
        try:
            it = os.scandir(root / rel_dir if rel_dir else root)
        except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
            if rel_dir == start:
                log.debug("cannot list %r: %s", rel_dir, e)
            else:
                log.warning("cannot list %r: %s", rel_dir, e)
            continue
        with it:
            for d in it:
                rel = f"{rel_dir}/{d.name}" if rel_dir else d.name
                try:
                    st = d.stat(follow_symlinks=False)
                except OSError:  # gone meanwhile
                    continue
                if stat.S_ISDIR(st.st_mode):
                    path = server_path(rel)
                    if path is not None and not rules.ignored(path, is_dir=True):
                        stack.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    path = server_path(rel)
                    if path is not None and not rules.ignored(path):
                        yield Entry(path, rel, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def probe(root: Path, rules: IgnoreRules, fspath: str) -> Entry | str | None:
    """What a path named by a watch event is now: an ``Entry`` for a shareable file, ``"dir"`` for
    a directory to walk, None if there is nothing to share there (gone, ignored, a symlink or under
    one, a special file)."""
    parts = fspath.split("/")
    for i in range(1, len(parts)):
        ancestor = "/".join(parts[:i])
        path = server_path(ancestor)
        if path is None or rules.ignored(path, is_dir=True):
            return None
        try:
            if not stat.S_ISDIR(os.lstat(root / ancestor).st_mode):
                return None
        except OSError:
            return None
    try:
        st = os.lstat(root / fspath)
    except OSError:
        return None
    path = server_path(fspath)
    if path is None:
        return None
    if stat.S_ISDIR(st.st_mode):
        return None if rules.ignored(path, is_dir=True) else "dir"
    if not stat.S_ISREG(st.st_mode) or rules.ignored(path):
        return None
    return Entry(path, fspath, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def restat(root: Path, entry: Entry) -> Entry | None:
    """``entry`` as it is now on disk (same names, fresh stat), or None if no regular file is
    there. The cheap re-check after hashing a file ``walk`` just listed: its ancestors and the
    ignore rules were looked at moments ago, and a file swapped under a renamed ancestor shows
    up as another inode."""
    try:
        st = os.lstat(root / entry.fspath)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return Entry(entry.path, entry.fspath, st.st_size, st.st_mtime_ns, st.st_ino,
                 st.st_ctime_ns)
