"""One engine per synced folder: the receiving half (``mirror/``) and the sending half (``share/``)
on one folder, one state database (``agent/db.py``), one event loop.

- ``vidsync share DIR`` (the owner) and ``vidsync join`` on an editor's membership run both
  halves: changes made here are sent, each with the ``base`` it was derived from; changes made
  elsewhere arrive over the log and are applied. A file the receiving half writes is recorded in
  the index in the same transaction, so it is never sent back (no echo).
- A viewer's ``vidsync join`` and ``--receive-only`` run the receiving half alone: a mirror,
  whose local edits are reported and never sent.
- When the server stops taking this member's changes (403: demoted to viewer), the sending half
  stops, says so, and the folder goes on receiving. Local changes stay in the index, unsent.
- When a member whose folder is receive-only because of the role (not ``--receive-only``,
  ``--once`` or ``--only``) becomes an editor again, the engine stops and sets ``promoted``; the
  command starts it again both ways, in the same process, and what was changed here is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path

from vidsync.agent.locks import LOCK_NOTICES, LockKeeper, guarded_file
from vidsync.agent.mirror.engine import MirrorAgent
from vidsync.agent.mirror.safepath import PathPolicy, detect_case_insensitive
from vidsync.agent.mirror.state import LocalFile, MirrorState
from vidsync.agent.mirror.ui import Ui
from vidsync.agent.share.agent import Sender, ShareOptions
from vidsync.agent.share.conflicts import Resolver, safe_who
from vidsync.agent.share.state import ShareState
from vidsync.agent.share.sync import ReadOnly
from vidsync.client import ApiError, Client, ServerUnreachable

log = logging.getLogger("vidsync.agent")


def path_policy(state: MirrorState, root: Path) -> PathPolicy:
    """What names this folder's file system takes (case folding detected once, then recorded)."""
    folds = state.get("case_insensitive")
    if folds is None:
        folds = detect_case_insensitive(str(state.dir))
        state.put(case_insensitive=folds)
    return PathPolicy(str(root), bool(folds))


class FolderAgent:
    """The engine of one folder; ``send`` None runs it receive-only."""

    def __init__(self, root: Path, client: Client, state: MirrorState, ui: Ui, policy: PathPolicy,
                 send: ShareOptions | None, may_promote: bool = False) -> None:
        self.root = root
        # Receive-only because of the role: start again both ways on becoming an editor.
        self.may_promote = may_promote
        self.promoted = False
        self._stop: asyncio.Event | None = None
        self.client = client
        self.state = state
        self.ui = ui
        self.receiver = MirrorAgent(root, client, state, ui, policy, two_way=send is not None)
        self.sender: Sender | None = None
        self._send_task: asyncio.Task | None = None
        self.user_id = state.get("user_id")
        self.who = str(state.get("user_name") or "someone")
        self.receiver.on_notice = self._notice
        self.receiver.notices = ("project:role", *LOCK_NOTICES)
        self.locks = LockKeeper(root, state, client, self.receiver.project_id,
                                me=lambda: self.user_id, report=ui.line)
        self.receiver.on_connected = self._connected
        self._tasks: set[asyncio.Task] = set()
        state.put(mode="two-way" if send is not None else "receive-only")
        state.on_synced = lambda path, row: self.locks.after_write(path) if row else None
        if send is None:
            return
        share = ShareState(root, mirror=state, fold=policy.fold)
        resolver = Resolver(root, share, state, self.receiver.applier.lock, lambda: self.who,
                            policy.fold, ui.line, on_stale=lambda p: self.sender.mark({p}))
        self.sender = sender = Sender(root, client, self.receiver.project_id, share, send,
                                      on_conflict=resolver)

        def synced(path: str, row: LocalFile | None) -> None:
            # What the receiving half wrote goes into the index as it is: never sent back. A
            # path this folder ignores stays out of the index (neither sent nor deleted).
            if row is None or not sender.rules.ignored(path):
                share.written(path, row)
            if row is not None:
                self.locks.after_write(path)

        state.on_synced = synced
        sender.on_marked = self._marked
        self.locks.on_unlocked = sender.syncer.release

    def close(self) -> None:
        self.receiver.close()

    async def run(self, stop: asyncio.Event, follow: bool = True) -> None:
        """Sync until ``stop`` is set (or, without ``follow``, until up to date), or until a
        promotion ends this run (``promoted``)."""
        self._stop = ended = asyncio.Event()
        relay = asyncio.ensure_future(stop.wait())
        relay.add_done_callback(lambda _: ended.set())
        beside = None
        if follow:
            await self._learn_who()
        if self.sender is not None and follow:
            beside = self._send()
        try:
            await self.receiver.run(ended, follow, beside=beside)
        finally:
            relay.cancel()
            for task in self._tasks:
                task.cancel()

    def _spawn(self, coro: Coroutine) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _connected(self) -> None:
        self._spawn(self.locks.refresh())  # lock notices may have been missed meanwhile

    def _marked(self, fspaths: set[str]) -> None:
        lock_files = {p for p in fspaths if guarded_file(p) is not None}
        if lock_files:
            self._spawn(self.locks.lock_files_changed(lock_files))

    async def _learn_who(self) -> None:
        """Who this agent is: the name conflict copies made here carry, and the user id role
        notices are for (remembered for offline starts)."""
        try:
            me = await self.client.me()
        except (ServerUnreachable, ApiError):
            return
        self.user_id = me.get("id")
        self.who = safe_who(me.get("name") or str(me.get("email", "")).split("@")[0])
        self.state.put(user_name=self.who, user_id=self.user_id)

    async def _send(self) -> None:
        assert self.sender is not None
        self._send_task = task = asyncio.ensure_future(self.sender.run())
        try:
            await asyncio.wait([task])
        finally:
            # Wait for the sending half to finish its own cleanup (it writes its state): the
            # caller closes the database as soon as this returns.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled():
            e = task.exception()
            if not isinstance(e, ReadOnly):
                raise e  # type: ignore[misc]
            self.receive_only(str(e))
        await asyncio.Event().wait()  # the receiving half goes on

    def _notice(self, name: str, data: dict) -> None:
        if name in LOCK_NOTICES:
            self.locks.on_notice(name, data)
        elif name == "project:role" and data.get("user_id") == self.user_id:
            role = data.get("role")
            self.state.put(role=role)
            if role == "viewer" and self._send_task is not None and not self._send_task.done():
                self._send_task.cancel()
                self.receive_only("the owner made you a viewer")
            elif role in ("editor", "owner") and (self.sender is None or (
                    self._send_task is not None and self._send_task.done())):
                if self.may_promote and self._stop is not None:
                    self.ui.message(f"you are an {role} now: this folder sends the changes made "
                                    "here from now on")
                    self.promoted = True
                    self._stop.set()
                else:
                    self.ui.message(f"you are an {role} now: run 'vidsync join {self.root}' "
                                    "again without --receive-only to send the changes made here")

    def receive_only(self, reason: str) -> None:
        self.state.put(mode="receive-only", mode_reason=reason)
        self.ui.message(f"this folder is receive-only now ({reason}); changes made here are "
                        f"kept and not sent")
