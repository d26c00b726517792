"""Versioned schema migrations on both backends: applied once, recorded, and a database from a
newer release is refused rather than misread."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from vidsync.changes import Change
from vidsync.store import migrations, open_store
from vidsync.store.base import Author

PG_MIGRATIONS = migrations.load("postgres")
SQLITE_MIGRATIONS = migrations.load("sqlite")


def test_every_backend_has_the_same_number_of_versions() -> None:
    # A schema change lands for both backends at once.
    assert [m.version for m in PG_MIGRATIONS] == [m.version for m in SQLITE_MIGRATIONS]
    assert [m.name for m in PG_MIGRATIONS] == [m.name for m in SQLITE_MIGRATIONS]


def test_postgres_migrations_are_recorded_applied_once_and_newer_is_refused(database: str) -> None:
    async def run() -> None:
        # Two nodes starting at once: the advisory lock lets one migrate, the other sees it done.
        first, second = await asyncio.gather(open_store(database), open_store(database))
        await first.close()
        await second.close()
        conn = await asyncpg.connect(database)
        try:
            rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
            assert [(r["version"], r["name"]) for r in rows] == \
                [(m.version, m.name) for m in PG_MIGRATIONS]
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')",
                               len(PG_MIGRATIONS) + 1)
        finally:
            await conn.close()
        with pytest.raises(RuntimeError, match="newer than this vidsync"):
            await open_store(database)

    asyncio.run(run())


def test_sqlite_migrations_are_recorded_and_newer_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "vidsync.db")

    async def open_close() -> None:
        store = await open_store(path)
        await store.close()

    asyncio.run(open_close())
    asyncio.run(open_close())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(SQLITE_MIGRATIONS)
        conn.execute(f"PRAGMA user_version = {len(SQLITE_MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this vidsync"):
        asyncio.run(open_close())


def test_roles_migration_keeps_members_and_credits_old_events_to_the_owner(
        tmp_path: Path, database: str) -> None:
    """Before roles only the owner could write: an upgraded log's events are the owner's, and the
    members and invites it had are kept (SQLite rebuilds the members table to widen the role)."""
    version = next(m.version for m in SQLITE_MIGRATIONS if m.name == "roles_and_authors")
    rows = {
        "users": [("u1", "o@example.com", "Olga", "x", 0), ("u2", "v@example.com", "Vic", "x", 0)],
        "projects": [("p1", "u1", "film", "", 0, 1, 0)],
        "members": [("p1", "u1", "owner", 0), ("p1", "u2", "viewer", 0)],
        "invites": [("c1", "p1", "u1", 0, 10**13, None, 0, None)],
        "events": [("p1", 1, "a.mov", "create", "0" * 64, 1, None, 0)],
    }

    def check(members: list, invite_role: str, authors: list) -> None:
        assert sorted(members) == [("u1", "owner"), ("u2", "viewer")]
        assert invite_role == "viewer" and authors == [("u1", "Olga")]

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for mig in SQLITE_MIGRATIONS[:version - 1]:
            conn.executescript(mig.sql)
        conn.execute(f"PRAGMA user_version = {version - 1}")
        for table, values in rows.items():
            for row in values:
                conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)

    async def upgrade_sqlite() -> None:
        store = await open_store(str(path))
        events, _, _ = await store.events_since("p1", 0, 10)
        check([(m.user_id, m.role) for m in await store.members("p1")],
              (await store.invites("p1", datetime.now(UTC)))[0].role,
              [(e.author.id, e.author.name) for e in events])
        await store.close()

    asyncio.run(upgrade_sqlite())

    async def upgrade_postgres() -> None:
        conn = await asyncpg.connect(database)
        try:
            async with conn.transaction():
                await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                                   " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL"
                                   " DEFAULT now())")
                for mig in PG_MIGRATIONS[:version - 1]:
                    await conn.execute(mig.sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name)"
                                       " VALUES ($1, $2)", mig.version, mig.name)
                t0, later = datetime.fromtimestamp(0, UTC), datetime.now(UTC) + timedelta(days=1)
                pg_rows = {  # the same rows with PostgreSQL's timestamps
                    "users": [(*r[:4], t0) for r in rows["users"]],
                    "projects": [("p1", "u1", "film", "", t0, 1, t0)],
                    "members": [(*r[:3], t0) for r in rows["members"]],
                    "invites": [("c1", "p1", "u1", t0, later, None, 0, None)],
                    "events": [(*r[:7], t0) for r in rows["events"]],
                }
                for table, values in pg_rows.items():
                    for row in values:
                        marks = ", ".join(f"${i + 1}" for i in range(len(row)))
                        await conn.execute(f"INSERT INTO {table} VALUES ({marks})", *row)
        finally:
            await conn.close()
        store = await open_store(database)
        events, _, _ = await store.events_since("p1", 0, 10)
        check([(m.user_id, m.role) for m in await store.members("p1")],
              (await store.invites("p1", datetime.now(UTC)))[0].role,
              [(e.author.id, e.author.name) for e in events])
        await store.close()

    asyncio.run(upgrade_postgres())


def test_deleted_files_migration_lists_what_the_old_log_deleted(tmp_path: Path,
                                                                database: str) -> None:
    """Upgrading fills the deleted files from the log already written: a path deleted once and
    one deleted twice (with its last version), not a live one nor a delete of a path that
    never had content; appends after the upgrade keep the list."""
    version = next(m.version for m in SQLITE_MIGRATIONS if m.name == "deleted_files")
    h = "0" * 64
    log = [(1, "a.mov", "create", h), (2, "a.mov", "delete", None), (3, "b.mov", "create", h),
           (4, "c.mov", "create", h), (5, "c.mov", "update", h), (6, "c.mov", "delete", None),
           (7, "c.mov", "delete", None), (8, "ghost", "delete", None)]

    async def check(url: str) -> None:
        store = await open_store(url)
        try:
            found = await store.deleted_files("p1", "", "", 10)
            assert [(d.path, d.deleted_seq, d.last_version.seq) for d in found] == \
                [("a.mov", 2, 1), ("c.mov", 7, 5)]
            owner = Author("u1", "Olga")
            await store.append_events("p1", [Change("a.mov", "create", h, 1, None),
                                             Change("b.mov", "delete", None, None, None)],
                                      datetime.now(UTC), None, "d", author=owner)
            found = await store.deleted_files("p1", "", "", 10)
            assert [(d.path, d.deleted_seq, d.last_version.seq) for d in found] == \
                [("b.mov", 10, 3), ("c.mov", 7, 5)]
        finally:
            await store.close()

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for mig in SQLITE_MIGRATIONS[:version - 1]:
            conn.executescript(mig.sql)
        conn.execute(f"PRAGMA user_version = {version - 1}")
        conn.execute("INSERT INTO users VALUES ('u1', 'o@example.com', 'Olga', 'x', 0)")
        conn.execute("INSERT INTO projects VALUES ('p1', 'u1', 'film', '', 0, 8, 0)")
        conn.execute("INSERT INTO members VALUES ('p1', 'u1', 'owner', 0)")
        conn.executemany("INSERT INTO events VALUES ('p1', ?, ?, ?, ?, 1, NULL, 0, 'u1', 'Olga')",
                         log)
        conn.execute("INSERT INTO files VALUES ('p1', 'b.mov', ?, 1, NULL, 3)", (h,))
    asyncio.run(check(str(path)))

    async def old_postgres() -> None:
        conn = await asyncpg.connect(database)
        try:
            async with conn.transaction():
                await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                                   " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL"
                                   " DEFAULT now())")
                for mig in PG_MIGRATIONS[:version - 1]:
                    await conn.execute(mig.sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name)"
                                       " VALUES ($1, $2)", mig.version, mig.name)
                t0 = datetime.fromtimestamp(0, UTC)
                await conn.execute("INSERT INTO users VALUES ('u1', 'o@example.com', 'Olga',"
                                   " 'x', $1)", t0)
                await conn.execute("INSERT INTO projects VALUES ('p1', 'u1', 'film', '', $1, 8,"
                                   " $1)", t0)
                await conn.execute("INSERT INTO members VALUES ('p1', 'u1', 'owner', $1)", t0)
                await conn.executemany("INSERT INTO events VALUES ('p1', $1, $2, $3, $4, 1, NULL,"
                                       " $5, 'u1', 'Olga')", [(*e, t0) for e in log])
                await conn.execute("INSERT INTO files VALUES ('p1', 'b.mov', $1, 1, NULL, 3)", h)
        finally:
            await conn.close()

    asyncio.run(old_postgres())
    asyncio.run(check(database))
