"""``vidsync revert``: put the owner's version back over local edits, keeping the edited copies.

Each edited, added or deleted path is first moved into ``.vidsync/trash/<time>/`` (nothing the user
made is destroyed), its record is cleared, and the owner's version is applied like any pending
change. It takes the same apply lock as a running join agent, so both may run at once. The join
agent empties what has been in the trash longer than the server keeps old versions
(``empty_trash``), so the mirror's copies last as long as the project's history does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

from vidsync.agent.mirror import disk
from vidsync.agent.mirror.apply import Applier
from vidsync.agent.mirror.safepath import open_parent

TRASH_DIR = "trash"


async def move_edits_aside(applier: Applier, only: list[str] | None = None) -> list[tuple[str, str]]:
    """Scan, then move every local edit (under the ``only`` paths, if given) into the trash.
    Returns ``(path, where it went)`` for each, ``where`` empty when nothing was on disk."""
    await applier.edits.scan()
    state = applier.state
    edits = [p for p in state.edits() if not only or any(p == o or p.startswith(o + "/") for o in only)]
    if not edits:
        return []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    trash = state.dir / TRASH_DIR / stamp
    trash.mkdir(parents=True, exist_ok=True)
    trash_fd = os.open(trash, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    moved = []
    try:
        for path in edits:
            async with applier.lock.held():
                where = ""
                if not (await asyncio.to_thread(disk.look, applier.root_fd, path)).absent:
                    with open_parent(trash_fd, path, create=True) as parent:
                        assert parent is not None
                        # Into trash/<stamp>/<path>: rename needs the name's folder, made here.
                        target = path.rsplit("/", 1)[-1]
                        dest_fd = os.dup(parent)
                    try:
                        if await asyncio.to_thread(disk.move_aside, applier.root_fd, path, dest_fd, target):
                            where = str(trash / path)
                    finally:
                        os.close(dest_fd)
                state.drop_local(path)
                state.clear_edit(path)
            moved.append((path, where))
    finally:
        os.close(trash_fd)
    return moved


def empty_trash(trash: Path, max_age_s: float, now: float | None = None) -> list[str]:
    """Remove the trash's ``<time>/`` folders older than ``max_age_s`` (by mtime: when they were
    made). Blocking; returns their names."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(trash))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) \
                and entry.stat(follow_symlinks=False).st_mtime < now - max_age_s:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed
