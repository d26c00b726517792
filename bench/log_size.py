"""How big the event log grows: bytes on disk per million events, on SQLite and on PostgreSQL.

    .venv/bin/python bench/log_size.py [--events 1000000] [--postgres postgresql://127.0.0.1/test]

Appends ``--events`` events through the stores' own ``append_events`` (batches of 1000, as agents
post them) to one project: realistic paths (``footage/day07/A012_C0345.mov``, 30 bytes), a hash,
size, mtime and author each; one path in five is a new file, the rest updates. Then measures the
events table with its indexes (and, for SQLite, the whole database file after a checkpoint).
PostgreSQL runs on a scratch database that is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from vidsync.changes import Change
from vidsync.store.base import Author, Store

BATCH = 1000


def changes(n: int, start: int) -> list[Change]:
    out = []
    for i in range(start, start + n):
        path = f"footage/day{i % 30:02d}/A{i % 997:03d}_C{(i // 5) % 10000:04d}.mov"
        digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
        out.append(Change(path, "create" if i % 5 == 0 else "update", digest,
                          1_000_000 + i, 1_764_000_000_000 + i))
    return out


async def fill(store: Store, events: int) -> float:
    user = await store.create_user(f"log-{uuid.uuid4().hex[:8]}@example.com", "Log bench", "x")
    assert user is not None
    project_id = "log-bench"
    await store.create_project(project_id, user.id, "log bench", "", datetime.now(UTC))
    author = Author(user.id, user.name)
    started = time.monotonic()
    for start in range(0, events, BATCH):
        await store.append_events(project_id, changes(min(BATCH, events - start), start),
                                  datetime.now(UTC), None, str(start), author=author)
    return time.monotonic() - started


async def sqlite_run(events: int) -> dict:
    from vidsync.store.sqlite import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "vidsync.db")
        store = await SqliteStore.open(path)
        seconds = await fill(store, events)
        await store.close()
        events_bytes, total = sqlite_sizes(path)
    return {"backend": "SQLite", "seconds": seconds, "events_bytes": events_bytes,
            "total_bytes": total}


def sqlite_sizes(path: str) -> tuple[int | None, int]:
    """(events table and its indexes, the whole file) after a checkpoint."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    try:
        rows = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
        events_bytes = rows.get("events", 0) + rows.get("events_by_path", 0)
    except sqlite3.OperationalError:  # built without dbstat
        events_bytes = None
    db.close()
    return events_bytes, os.path.getsize(path)


async def postgres_run(events: int, base_url: str) -> dict:
    import asyncpg

    from vidsync.store.postgres import PostgresStore

    name = "vidsync_logsize_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(base_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = base_url.rsplit("/", 1)[0] + "/" + name
        store = await PostgresStore.open(url)
        seconds = await fill(store, events)
        async with store.pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE events")
            events_bytes = await conn.fetchval("SELECT pg_total_relation_size('events')")
            total = await conn.fetchval("SELECT pg_database_size(current_database())")
        await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {"backend": "PostgreSQL", "seconds": seconds, "events_bytes": events_bytes,
            "total_bytes": total}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--postgres", default=os.environ.get("VIDSYNC_TEST_DATABASE",
                                                        "postgresql://127.0.0.1:5432/test"))
    p.add_argument("--skip-postgres", action="store_true")
    args = p.parse_args()
    results = [asyncio.run(sqlite_run(args.events))]
    if not args.skip_postgres:
        results.append(asyncio.run(postgres_run(args.events, args.postgres)))
    per_million = 1_000_000 / args.events
    print(f"{args.events:,} events; load average "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    for r in results:
        ev = "n/a" if r["events_bytes"] is None else \
            f"{r['events_bytes'] * per_million / 2**20:.0f} MiB"
        print(f"{r['backend']:<11} events table + indexes per million: {ev:>9}; whole database "
              f"{r['total_bytes'] * per_million / 2**20:.0f} MiB per million; appended in "
              f"{r['seconds']:.0f} s ({args.events / r['seconds']:,.0f} events/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
