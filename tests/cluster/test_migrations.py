"""Versioned schema migrations on both backends: applied once, recorded, and a database from a
newer release is refused rather than misread."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from vidsync.store import migrations, open_store

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
