"""File locks in a synced folder: what someone else holds is read-only here, and the lock files
editing apps write become locks on the project.

- The project's locks are read from the server on connect and kept current by its live notices.
  While a file is locked by someone else, its local copy has no write permission (an NLE then
  opens it read-only, as Avid and Premiere do with a bin or project another user has open); the
  mode it had is recorded and put back when the lock goes, even across a restart.
- Editing apps mark an open file with a lock file beside it: Premiere Pro's ``NAME.prlock`` for
  ``NAME.prproj``, Avid's ``NAME.lck`` for the bin ``NAME.avb``. When one appears next to the
  file it guards (and only then: that is when the mapping is clearly right) this agent takes the
  lock on that file for its user, and releases it when the lock file goes. (The server renews a
  lock while its holder is connected, so a lock outlives neither the agent nor the app.) The lock files
  themselves are never synced (they mean "open on this machine", nothing to another).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from vidsync.agent.mirror.state import MirrorState
from vidsync.client import ApiError, Client, ServerUnreachable

log = logging.getLogger("vidsync.locks")

# Socket.IO notices of the project's locks: one lock changed; all of them (after subscribing)
LOCK_NOTICES = ("project:lock", "project:locks")
# lock file suffix -> the suffix of the file it guards, in the same folder
NLE_LOCK_FILES = {".prlock": ".prproj", ".lck": ".avb"}
WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def guarded_file(path: str) -> str | None:
    """The file a lock file guards (``cut.prlock`` -> ``cut.prproj``), or None."""
    stem, dot, suffix = path.rpartition(".")
    if not dot or not stem or stem.endswith("/"):
        return None
    guarded = NLE_LOCK_FILES.get("." + suffix.lower())
    return stem + guarded if guarded else None


def holder_name(lock: dict) -> str:
    user = lock.get("user") or {}
    return str(user.get("name") or user.get("email") or user.get("id") or "someone")


class LockKeeper:
    """Keeps the folder's file modes in step with the project's locks."""

    def __init__(self, root: Path, state: MirrorState, client: Client, project_id: str,
                 me: Callable[[], str | None], report: Callable[[str, str, str], None]) -> None:
        self.root = root
        self.state = state
        self.client = client
        self.project_id = project_id
        self.me = me  # this user's id
        self.report = report
        self.others: dict[str, dict] = {}  # path -> lock held by someone else
        self.on_unlocked: Callable[[str], None] | None = None
        self.mine_by_nle: set[str] = set()  # locks taken here for an app's lock file

    # -- the project's locks ----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Take the server's list of locks as the truth (on connect and reconnect)."""
        try:
            locks = await self.client.locks(self.project_id)
        except (ServerUnreachable, ApiError) as e:
            log.info("cannot list the project's locks: %s", e)
            return
        self.others = {lk["path"]: lk for lk in locks if not self._mine(lk)}
        self._enforce()

    def on_notice(self, name: str, data: dict) -> None:
        """``project:locks`` {locks} (all of them, after subscribing) or ``project:lock``
        {path, lock} (``lock`` null: released, broken or expired)."""
        if name == "project:locks" and isinstance(data.get("locks"), list):
            self.others = {lk["path"]: lk for lk in data["locks"]
                           if isinstance(lk, dict) and isinstance(lk.get("path"), str)
                           and not self._mine(lk)}
        elif name == "project:lock" and isinstance(data.get("path"), str):
            path, lock = data["path"], data.get("lock")
            if isinstance(lock, dict) and not self._mine(lock):
                self.others[path] = lock
                self.report("locked", path, f"by {holder_name(lock)}: read-only here until "
                                            "released")
            elif self.others.pop(path, None) is not None:
                self.report("unlocked", path, f"{data.get('reason') or 'released'}: writable again")
            if self.on_unlocked is not None and path not in self.others:
                self.on_unlocked(path)
        self._enforce()

    def held_by_other(self, path: str) -> bool:
        return path in self.others

    def _mine(self, lock: dict) -> bool:
        return (lock.get("user") or {}).get("id") == self.me()

    def after_write(self, path: str) -> None:
        """The receiving half wrote ``path``: a file locked by someone else stays read-only."""
        if path in self.others:
            self._set_readonly(path)

    def _enforce(self) -> None:
        held: dict[str, int] = dict(self.state.get("readonly_modes") or {})  # type: ignore[arg-type]
        for path in self.others:
            if path not in held:
                mode = self._set_readonly(path)
                if mode is not None:
                    held[path] = mode
        for path in [p for p in held if p not in self.others]:
            self._restore(path, held.pop(path))
        self.state.put(readonly_modes=held)

    def _set_readonly(self, path: str) -> int | None:
        """Drop the write bits; the mode it had (None if there is no such file here)."""
        try:
            st = os.lstat(self.root / path)
            if not stat.S_ISREG(st.st_mode):
                return None
            os.chmod(self.root / path, stat.S_IMODE(st.st_mode) & ~WRITE_BITS)
        except OSError:
            return None
        return stat.S_IMODE(st.st_mode)

    def _restore(self, path: str, mode: int) -> None:
        try:
            st = os.lstat(self.root / path)
            if stat.S_ISREG(st.st_mode):
                # Only the write bits come back: anything else changed meanwhile is kept.
                os.chmod(self.root / path, stat.S_IMODE(st.st_mode) | (mode & WRITE_BITS))
        except OSError:
            pass

    # -- lock files written by editing apps ----------------------------------------------------------

    async def lock_files_changed(self, fspaths: set[str]) -> None:
        """Take or release the lock on the file an app's lock file guards, as it comes and goes."""
        for fspath in sorted(fspaths):
            guarded = guarded_file(fspath)
            if guarded is None or not (self.root / guarded).is_file():
                continue
            present = (self.root / fspath).is_file()
            try:
                if present and guarded not in self.mine_by_nle:
                    await self.client.lock(self.project_id, guarded)
                    self.mine_by_nle.add(guarded)
                    self.report("locked", guarded, f"for you: {fspath} says it is open here")
                elif not present and guarded in self.mine_by_nle:
                    await self.client.unlock(self.project_id, guarded)
                    self.mine_by_nle.discard(guarded)
                    self.report("unlocked", guarded, f"{fspath} is gone: closed here")
            except ApiError as e:
                if e.code == "locked":
                    self.report("lock-refused", guarded, f"someone else holds it: {e.message}")
                else:
                    log.warning("lock on %r: %s", guarded, e)
            except ServerUnreachable as e:
                log.info("lock on %r: server unreachable (%s)", guarded, e)
