"""Durable state: accounts, tokens, projects, members, invites and the per-project event log.

``open_store(url)`` picks the backend: a file path or ``sqlite:///path`` gives the embedded SQLite
store (the default), ``postgresql://...`` the PostgreSQL one.
"""

from __future__ import annotations

from vidsync.store.base import (
    AppendResult,
    Author,
    Conflict,
    DeletedFile,
    Event,
    FileEntry,
    FolderEntry,
    IdempotencyMismatch,
    Invite,
    InviteError,
    Lock,
    Member,
    NotWriter,
    PathState,
    Project,
    Store,
    Usage,
    User,
    VersionRefs,
)


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (the ``postgres`` extra), not SQLite."""
    return url.startswith(("postgresql://", "postgres://"))


async def open_store(url: str) -> Store:
    """Open (and migrate) the store named by ``url``."""
    if is_postgres(url):
        from vidsync.store.postgres import PostgresStore

        return await PostgresStore.open(url)
    from vidsync.store.sqlite import SqliteStore

    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return await SqliteStore.open(path)


__all__ = [
    "is_postgres",
    "AppendResult",
    "Author",
    "Conflict",
    "DeletedFile",
    "Event",
    "FileEntry",
    "FolderEntry",
    "IdempotencyMismatch",
    "Invite",
    "InviteError",
    "Lock",
    "Member",
    "NotWriter",
    "PathState",
    "Project",
    "Store",
    "Usage",
    "User",
    "VersionRefs",
    "open_store",
]
