"""Resolution, never loss: what the agent does when the server refuses its change as a conflict.

The server refuses a change whose ``base`` is no longer the path's current version (409
``conflict``, one entry per conflicting change with the server's ``current`` version). For each:

- our delete, their modification: the modification wins; the index forgets the delete and the
  receiving side brings the server's version back.
- our create/update of content the server already has there: nothing to do but agree.
- our create/update, the server's side deleted: the modification wins; it is sent again as a
  new file.
- our create/update, their different version: ours is renamed beside it to
  ``<stem> (conflict <who> <YYYY-MM-DD HHMMSS>).<ext>`` (the extension kept so an NLE opens it) and
  sent as a new file; the server's version is applied at the original path. Past
  ``MAX_COPIES`` unresolved copies of one file (a file fought over in a loop), a further losing
  version is kept on this machine only, in ``DIR/.vidsync/conflicts/``, and reported.

Disk and records change under the apply lock the receiving side writes under, so it never
installs the server's version over a file that is still being set aside.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from vidsync.agent.mirror.lock import ApplyLock
from vidsync.agent.mirror.state import LocalFile as Synced
from vidsync.agent.mirror.state import MirrorState, RemoteFile
from vidsync.agent.share.scanner import server_path
from vidsync.agent.share.state import OutboxBatch, ShareState
from vidsync.changes import MAX_SEGMENT_BYTES

log = logging.getLogger("vidsync.share")

MAX_COPIES = 10
KEPT_DIR = "conflicts"
# "<stem> (conflict <who> <YYYY-MM-DD HHMMSS>)[ n].<ext>"
_COPY = re.compile(r"^(?P<stem>.*) \(conflict (?P<who>.+) (?P<when>\d{4}-\d{2}-\d{2} \d{6})\)"
                   r"(?: \d+)?(?P<ext>\.[^./ ]*)?$")

Report = Callable[[str, str, str], None]  # (what, path, detail)


def is_conflict_copy(path: str) -> bool:
    return _COPY.match(path.rsplit("/", 1)[-1]) is not None


def split_name(name: str) -> tuple[str, str]:
    """(stem, extension with its dot): ``cut.prproj`` -> (``cut``, ``.prproj``); a dotfile or a
    name without a dot has no extension."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def safe_who(name: str) -> str:
    """A user's name as it may appear in a file name: no separators or control characters."""
    cleaned = re.sub(r"[\x00-\x1f\x7f/\\:*?\"<>|()]", "", name).strip() or "someone"
    return cleaned[:40]


def copy_name(name: str, who: str, when: float, n: int = 1) -> str:
    """The conflict copy's file name for ``name`` (``n`` > 1: a second copy in the same second)."""
    stem, ext = split_name(name)
    stamp = time.strftime("%Y-%m-%d %H%M%S", time.localtime(when))
    suffix = f" (conflict {who} {stamp})" + (f" {n}" if n > 1 else "") + ext
    room = MAX_SEGMENT_BYTES - len(suffix.encode())
    while len(stem.encode()) > room:  # keep the name within what a file system holds
        stem = stem[:-1]
    return stem + suffix


def copies_of(name: str, siblings: list[str]) -> int:
    """How many conflict copies of ``name`` are among the names ``siblings`` (one folder)."""
    stem, ext = split_name(name)
    n = 0
    for s in siblings:
        m = _COPY.match(s)
        if m and m["stem"] == stem and (m["ext"] or "") == ext:
            n += 1
    return n


def unresolved(db: sqlite3.Connection) -> list[str]:
    """The conflict copies in the project as this folder knows it (the server's paths, and copies
    made here and not sent yet): each stays until someone deletes or renames it."""
    paths = {r[0] for r in db.execute("SELECT path FROM remote WHERE hash IS NOT NULL")}
    paths |= {r[0] for r in db.execute("SELECT path FROM idx WHERE hash IS NOT NULL")}
    return sorted(p for p in paths if is_conflict_copy(p))


def kept_here(state_dir: Path) -> list[str]:
    """Losing versions past ``MAX_COPIES``, kept on this machine only."""
    root = state_dir / KEPT_DIR
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class Resolver:
    """Applies the rules above to one refused batch."""

    def __init__(self, root: Path, share: ShareState, mirror: MirrorState, lock: ApplyLock,
                 who: Callable[[], str], fold: Callable[[str], str], report: Report,
                 on_stale: Callable[[str], None]) -> None:
        self.root = root
        self.share = share
        self.mirror = mirror
        self.lock = lock
        self.who = who
        self.fold = fold
        self.report = report
        self.on_stale = on_stale  # the indexer looks at this on-disk path again

    async def __call__(self, batch: OutboxBatch, conflicts: list[dict]) -> int:
        """Resolve the batch's conflicts; returns how many were (0: the answer named none)."""
        done = 0
        async with self.lock.held():
            for c in conflicts:
                index = c.get("index")
                current = c.get("current")
                if (not isinstance(index, int) or not 0 <= index < len(batch.changes)
                        or not isinstance(current, dict)
                        or batch.changes[index]["path"] != c.get("path")):
                    continue
                self._one(batch.changes[index], current)
                done += 1
        return done

    def _one(self, change: dict, current: dict) -> None:
        path = change["path"]
        theirs = current.get("hash")
        author = (current.get("author") or {}).get("name") or "someone"
        seq = current.get("seq")
        if isinstance(seq, int) and seq > 0:
            # The server's version, now: the receiving side applies it without waiting for
            # its event. (No seq: the path was never written.)
            self.mirror.learn(RemoteFile(path, theirs, None, None, seq))
        if change["op"] == "delete":
            self.share.forget(path)
            self.mirror.unsync(path)
            if theirs is not None:
                self.report("conflict", path, f"changed by {author} meanwhile: their version "
                                              "comes back (a modification beats a delete)")
            return
        if theirs == change["hash"] and isinstance(seq, int):  # the same bytes: we agree after all
            mine = self.share.local(path)
            same = mine is not None and mine.hash == theirs
            self.mirror.posted(
                RemoteFile(path, theirs, change["size"], change["mtime"], seq),
                Synced(path, theirs, change["size"], mine.mtime_ns if same else -1,
                       mine.ino if same else -1), self.fold(path))
            return
        if theirs is None:  # deleted there, modified here: ours comes back as a new file
            self.mirror.unsync(path)
            self.report("conflict", path, f"deleted by {author} meanwhile: your version is "
                                          "kept (a modification beats a delete)")
            return
        self._set_aside(path, author)

    def _set_aside(self, path: str, author: str) -> None:
        mine = self.share.local(path)
        fspath = mine.fspath if mine is not None else path
        src = self.root / fspath
        folder, _, name = fspath.rpartition("/")
        parent = self.root / folder if folder else self.root
        try:
            siblings = os.listdir(parent)
        except OSError:
            siblings = []
        if not os.path.lexists(src):
            self.share.forget(path)  # deleted here since: nothing left to keep
            self.mirror.unsync(path)
            return
        if copies_of(name, siblings) >= MAX_COPIES:
            kept = self._keep_aside(src, fspath)
            self.share.forget(path)
            self.mirror.unsync(path)
            self.report("conflict", path, f"{author}'s version wins; {MAX_COPIES} conflict "
                                          f"copies exist already, so yours is kept only here: "
                                          f"{kept}")
            return
        now = time.time()
        n = 1
        while True:
            new_name = copy_name(name, self.who(), now, n)
            if new_name not in siblings and not os.path.lexists(parent / new_name):
                break
            n += 1
        new_fspath = f"{folder}/{new_name}" if folder else new_name
        new_path = server_path(new_fspath)
        os.rename(src, parent / new_name)
        if new_path is not None:
            self.share.move(path, new_path, new_fspath)
        else:
            self.share.forget(path)
        self.mirror.unsync(path)
        self.on_stale(new_fspath)
        self.report("conflict", path, f"{author} changed it meanwhile: theirs is applied here, "
                                      f"yours is kept as {new_fspath!r}")

    def _keep_aside(self, src: Path, fspath: str) -> Path:
        dest = self.mirror.dir / KEPT_DIR / time.strftime("%Y%m%d-%H%M%S") / fspath
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dest)
        return dest
