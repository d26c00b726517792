"""The store interface both backends implement, and the records it hands out.

Why one interface: the server and the hub never see SQL. A backend owns its schema, its migrations
and the one rule everything else leans on: ``append_events`` gives a project's events consecutive
``seq`` numbers, gap-free and unique, in the same transaction that writes them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import lru_cache

from vidsync.changes import Change


def utcnow() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=4096)
def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a ``Z``, as JavaScript's ``toISOString``."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


# Who may post changes and upload content: the one place that says so (the HTTP handlers and the
# stores' in-transaction check both read it).
WRITER_ROLES = ("owner", "editor")
# Roles an invite can grant, and the roles the owner can give a member.
MEMBER_ROLES = ("viewer", "editor")


def may_write(role: str | None) -> bool:
    return role in WRITER_ROLES


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote an event: the user's id and their name as it was when they wrote."""

    id: str
    name: str

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str
    created_at: datetime

    def to_json(self) -> dict:
        return {"id": self.id, "email": self.email, "name": self.name}

    @property
    def author(self) -> Author:
        return Author(self.id, self.name)


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    description: str
    owner_id: str
    created_at: datetime
    last_seq: int = 0
    last_activity_at: datetime | None = None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "owner_id": self.owner_id,
            "created_at": iso(self.created_at),
            "last_seq": self.last_seq,
            "last_activity_at": iso(self.last_activity_at) if self.last_activity_at else None,
        }


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    email: str
    name: str
    role: str
    joined_at: datetime

    def to_json(self) -> dict:
        return {"user_id": self.user_id, "email": self.email, "name": self.name,
                "role": self.role, "joined_at": iso(self.joined_at)}


@dataclass(frozen=True, slots=True)
class Invite:
    code: str
    project_id: str
    created_at: datetime
    expires_at: datetime
    max_uses: int | None
    uses: int
    revoked: bool
    role: str = "viewer"

    def to_json(self) -> dict:
        return {"code": self.code, "project_id": self.project_id,
                "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
                "max_uses": self.max_uses, "uses": self.uses, "role": self.role}


@dataclass(frozen=True, slots=True)
class Event:
    project_id: str
    seq: int
    change: Change
    created_at: datetime
    author: Author | None = None

    def to_json(self) -> dict:
        return {"project_id": self.project_id, "seq": self.seq, "change": self.change.to_json(),
                "created_at": iso(self.created_at),
                "author": self.author.to_json() if self.author else None}


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    hash: str
    size: int
    mtime: int | None
    seq: int

    def to_json(self) -> dict:
        return {"path": self.path, "hash": self.hash, "size": self.size, "mtime": self.mtime,
                "seq": self.seq}


@dataclass(frozen=True, slots=True)
class FolderEntry:
    """A folder in a folder listing, with totals over every file under it (at any depth)."""

    path: str  # with its trailing '/'
    file_count: int
    size: int
    mtime: int | None  # the latest of its files' (ms), None when none has one

    def to_json(self) -> dict:
        return {"path": self.path, "file_count": self.file_count, "size": self.size,
                "mtime": self.mtime}


@dataclass(frozen=True, slots=True)
class DeletedFile:
    """A path whose last event is a delete, with the last version it had (to restore it)."""

    path: str
    deleted_seq: int
    deleted_at: datetime
    last_version: Event


@dataclass(frozen=True, slots=True)
class VersionRefs:
    """The content hashes a project still needs: ``live`` (what its files hold now) and
    ``history`` (versions replaced or deleted after the retention cutoff, not live)."""

    live: frozenset[str]
    history: frozenset[str]


@dataclass(slots=True)
class Usage:
    """A project's stored content, in bytes of distinct blocks (shared blocks counted once), as
    the garbage collector's mark measured it at ``counted_at`` (seconds since the epoch)."""

    live_bytes: int = 0  # blocks the live files use
    history_bytes: int = 0  # blocks only kept versions use (restorable, within retention)
    pending_bytes: int = 0  # blocks of recent uploads no event names yet (kept for the grace)
    reclaimable_bytes: int = 0  # blocks nothing keeps: the next collection removes them
    stored_bytes: int = 0  # every block on disk
    counted_at: float = 0.0

    def to_json(self) -> dict:
        return {"live_bytes": self.live_bytes, "history_bytes": self.history_bytes,
                "pending_bytes": self.pending_bytes, "reclaimable_bytes": self.reclaimable_bytes,
                "stored_bytes": self.stored_bytes}


# The columns a kept measurement is stored in, in the order of Usage's fields.
USAGE_COLUMNS = ", ".join(f.name for f in fields(Usage))
USAGE_SET = ", ".join(f"{f.name} = excluded.{f.name}" for f in fields(Usage))


@dataclass(slots=True)
class AppendResult:
    """What ``append_events`` did. ``replayed`` is True when an idempotency key matched an earlier
    request: ``response`` is then the first response and ``events`` is empty (nothing appended)."""

    events: list[Event]
    last_seq: int
    response: dict
    replayed: bool = False


class InviteError(Exception):
    """An invite code that cannot be redeemed; ``reason`` is unknown, expired, revoked or used_up."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IdempotencyMismatch(Exception):
    """An ``Idempotency-Key`` reused with a different request body."""


class NotWriter(Exception):
    """The poster is not (or no longer) an owner or editor of the project."""


@dataclass(frozen=True, slots=True)
class PathState:
    """A path's latest state in the log: its hash (None when deleted or never written), the seq
    and author of the event that made it so (None for a path never written)."""

    hash: str | None
    seq: int | None
    author: Author | None

    def to_json(self) -> dict:
        return {"hash": self.hash, "seq": self.seq,
                "author": self.author.to_json() if self.author else None}


@dataclass(frozen=True, slots=True)
class Lock:
    """A path locked by a user until ``expires_at`` (a lease its holder's connection renews)."""

    project_id: str
    path: str
    user: Author
    acquired_at: datetime
    expires_at: datetime

    def to_json(self) -> dict:
        return {"path": self.path, "user": self.user.to_json(),
                "acquired_at": iso(self.acquired_at), "expires_at": iso(self.expires_at)}


class LockHeld(Exception):
    """Someone else holds the lock (``lock``)."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(f"{lock.path} is locked by {lock.user.name}")
        self.lock = lock


class TooManyLocks(Exception):
    """The project holds as many locks as it may."""


class Locked(Exception):
    """Changes to paths someone else holds a lock on: (index in the batch, path, lock). Nothing
    was appended."""

    def __init__(self, locked: list[tuple[int, str, Lock]]) -> None:
        super().__init__(f"{len(locked)} change(s) to locked paths")
        self.locked = locked


def locked_changes(changes: list[Change], others_locks: dict[str, Lock]) -> list[tuple[int, str, Lock]]:
    return [(i, c.path, others_locks[c.path]) for i, c in enumerate(changes)
            if c.path in others_locks]


class Conflict(Exception):
    """Changes whose ``base`` is not the path's current state: ``conflicts`` is a list of
    (index in the batch, path, current state). Nothing was appended."""

    def __init__(self, conflicts: list[tuple[int, str, PathState]]) -> None:
        super().__init__(f"{len(conflicts)} conflicting change(s)")
        self.conflicts = conflicts


def find_conflicts(changes: list[Change], bases: dict[int, str | None],
                   current: dict[str, PathState]) -> list[tuple[int, str, PathState]]:
    """The changes whose ``base`` differs from their path's state, ``current`` holding each
    based path's state before the batch. A later change in a batch is compared with the state the
    batch's earlier changes leave (so a batch may move a path on in several steps). A change whose
    result already holds (the same content, or a delete of a path that is gone) is no conflict:
    nothing anyone wrote is lost by it."""
    state = dict(current)
    found = []
    for i, c in enumerate(changes):
        now = state.get(c.path)
        if i in bases and now is not None and bases[i] != now.hash and c.hash != now.hash:
            found.append((i, c.path, now))
        state[c.path] = PathState(c.hash, None, None)
    return found


def deleted_changes(events: Sequence[Event]
                    ) -> tuple[list[tuple[str, int, int | None]], list[str]]:
    """How a batch moves the deleted files (``deleted_files``): for each path whose last event
    in the batch is a delete, (path, that delete's seq, the seq of the batch's last version of
    the path or None); and the paths the batch leaves live (no longer deleted). A path deleted
    with no version in the batch takes its version from before it (the live file's, or the one
    an earlier delete recorded), and is no deleted file if it never had content."""
    last: dict[str, Event] = {}
    version: dict[str, int] = {}
    for e in events:
        last[e.change.path] = e
        if e.change.hash is not None:
            version[e.change.path] = e.seq
    gone = [(p, e.seq, version.get(p)) for p, e in last.items() if e.change.op == "delete"]
    back = [p for p, e in last.items() if e.change.op != "delete"]
    return gone, back


class Store(abc.ABC):
    """Everything durable. All methods are coroutines; a backend may run them on threads."""

    # accounts and tokens
    @abc.abstractmethod
    async def create_user(self, email: str, name: str, password_hash: str) -> User | None:
        """Create a user; None if the (case-insensitive) email is taken."""

    @abc.abstractmethod
    async def user_by_email(self, email: str) -> tuple[User, str] | None:
        """The user and their password hash."""

    @abc.abstractmethod
    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    @abc.abstractmethod
    async def create_token(self, user_id: str, token_hash: str, expires_at: datetime) -> None: ...

    @abc.abstractmethod
    async def user_by_token(self, token_hash: str, now: datetime) -> User | None:
        """The user a live (unexpired, unrevoked) token belongs to."""

    @abc.abstractmethod
    async def revoke_token(self, token_hash: str) -> None: ...

    # projects, members, invites
    @abc.abstractmethod
    async def create_project(self, project_id: str, owner_id: str, name: str,
                             description: str, now: datetime) -> Project: ...

    @abc.abstractmethod
    async def get_project(self, project_id: str) -> Project | None: ...

    @abc.abstractmethod
    async def projects_for_user(self, user_id: str) -> list[tuple[Project, str, int]]:
        """Owned and joined projects: (project, role, member_count)."""

    @abc.abstractmethod
    async def update_project(self, project_id: str, name: str | None,
                             description: str | None) -> Project | None: ...

    @abc.abstractmethod
    async def delete_project(self, project_id: str) -> bool: ...

    @abc.abstractmethod
    async def role_of(self, project_id: str, user_id: str) -> str | None:
        """``owner``, ``editor``, ``viewer`` or None for a non-member (or no such project)."""

    @abc.abstractmethod
    async def set_member_role(self, project_id: str, user_id: str, role: str) -> Member | None:
        """Make a member (not the owner) an ``editor`` or ``viewer``; None if they are not one.
        Serialized with ``append_events``: a post that commits after this sees the new role."""

    @abc.abstractmethod
    async def members(self, project_id: str) -> list[Member]: ...

    @abc.abstractmethod
    async def remove_member(self, project_id: str, user_id: str) -> bool:
        """Remove a member other than the owner; False if they were not one."""

    @abc.abstractmethod
    async def create_invite(self, code: str, project_id: str, created_by: str, now: datetime,
                            expires_at: datetime, max_uses: int | None,
                            role: str = "viewer") -> Invite: ...

    @abc.abstractmethod
    async def invites(self, project_id: str, now: datetime) -> list[Invite]:
        """Invites that can still be redeemed."""

    @abc.abstractmethod
    async def revoke_invite(self, project_id: str, code: str) -> bool: ...

    @abc.abstractmethod
    async def redeem_invite(self, code: str, user_id: str, now: datetime) -> tuple[Project, str]:
        """Make the user a member with the invite's role; returns (project, role). Raises
        ``InviteError``. Redeeming as an existing member returns their role and does not count a
        use (the owner changes roles with ``set_member_role``)."""

    # the event log
    @abc.abstractmethod
    async def append_events(self, project_id: str, changes: list[Change], now: datetime,
                            idempotency_key: str | None, request_digest: str, *,
                            author: Author, bases: dict[int, str | None] | None = None,
                            ) -> AppendResult:
        """Append one event per change with consecutive seqs, atomically, and update the file
        table. With an idempotency key seen before for this project, append nothing and return
        the first response (``IdempotencyMismatch`` if the request differs).

        In the same transaction, so nothing can slip in between the check and the append:
        ``NotWriter`` unless ``author`` may write (``WRITER_ROLES``), ``Locked`` when a change's
        path is locked by someone else (a live lock: ``expires_at`` after ``now``), and
        ``Conflict`` when a change's base (``bases``: index -> expected hash, None for "no such
        file") is not the path's current state (``find_conflicts``)."""

    # file locks (leases; a lock whose expires_at has passed counts as gone everywhere)
    @abc.abstractmethod
    async def acquire_lock(self, project_id: str, path: str, user: Author, now: datetime,
                           expires_at: datetime, max_locks: int) -> tuple[Lock, bool]:
        """Lock ``path`` for ``user`` until ``expires_at``: (the lock, True if it is new). The
        holder acquiring again renews it (False). ``LockHeld`` if someone else holds it,
        ``TooManyLocks`` past ``max_locks`` live locks in the project. Serialized with
        ``append_events``: no change to the path commits after this by anyone else."""

    @abc.abstractmethod
    async def release_lock(self, project_id: str, path: str, user_id: str, may_break: bool,
                           now: datetime) -> Lock | None:
        """Release a live lock held by ``user_id`` (or by anyone, if ``may_break``): the lock
        released, None if there is none; ``LockHeld`` if someone else holds it."""

    @abc.abstractmethod
    async def locks(self, project_id: str, now: datetime) -> list[Lock]:
        """The project's live locks, in path order."""

    @abc.abstractmethod
    async def renew_locks(self, holders: set[tuple[str, str]], expires_at: datetime,
                          now: datetime) -> int:
        """Move the live locks of these (project id, user id) holders on to ``expires_at``."""

    @abc.abstractmethod
    async def expire_locks(self, now: datetime) -> list[Lock]:
        """Delete the locks whose lease ran out and return them (each to one caller only, so
        with several nodes one node announces each)."""

    @abc.abstractmethod
    async def release_member_locks(self, project_id: str, user_id: str) -> list[Lock]:
        """Delete a user's locks in a project (they left it, or can no longer write)."""

    @abc.abstractmethod
    async def events_since(self, project_id: str, since_seq: int, limit: int,
                           prefixes: tuple[str, ...] = ()) -> tuple[list[Event], int, bool]:
        """Events with seq > since_seq in order: (events, last_seq of the log, has_more)."""

    @abc.abstractmethod
    async def last_seq(self, project_id: str) -> int: ...

    @abc.abstractmethod
    async def files(self, project_id: str,
                    prefixes: tuple[str, ...] = ()) -> tuple[list[FileEntry], int]:
        """The live files and the seq the listing reflects, read in one snapshot."""

    @abc.abstractmethod
    async def folder(self, project_id: str, folder: str, prefixes: tuple[str, ...] = ()
                     ) -> tuple[list[FileEntry], list[FolderEntry], int]:
        """One level of the live files, read in one snapshot: the files directly in ``folder``
        ('' for the root, else 'dir/'), the folders directly in it with their totals, and the
        seq the listing reflects. ``prefixes`` restricts both as in ``files``."""

    # version history (docs/protocol.md, "Version history")
    @abc.abstractmethod
    async def history(self, project_id: str, path: str, before_seq: int,
                      limit: int) -> list[Event]:
        """Events of ``path`` (or, if it ends in '/', of every path under it) with seq <
        ``before_seq``, newest first."""

    @abc.abstractmethod
    async def deleted_files(self, project_id: str, prefix: str, after_path: str,
                            limit: int) -> list[DeletedFile]:
        """Paths under ``prefix`` ('' for all) whose last event is a delete and that had content
        once, in path order after ``after_path``."""

    @abc.abstractmethod
    async def files_as_of(self, project_id: str, prefix: str, seq: int) -> list[FileEntry]:
        """The files under ``prefix`` ('' for all) as the log stood after event ``seq``."""

    @abc.abstractmethod
    async def version_refs(self, project_id: str, cutoff: datetime) -> VersionRefs:
        """What content the project's log still refers to: a version is kept while it is live,
        or if the event that replaced or deleted it is newer than ``cutoff``."""

    # storage usage, as last measured (content/gc.py measures it; a measurement is slow)
    @abc.abstractmethod
    async def save_usage(self, project_id: str, usage: Usage) -> None:
        """Keep a measurement of the project's usage, unless a later one (by ``counted_at``) is
        kept already; nothing for a project that is gone."""

    @abc.abstractmethod
    async def usage(self, project_id: str) -> Usage | None:
        """The latest measurement kept, None if the project was never measured."""

    @abc.abstractmethod
    async def project_ids(self) -> list[str]:
        """Every project's id (the garbage collector walks them)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
