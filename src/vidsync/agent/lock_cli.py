"""``vidsync lock PATH`` and ``vidsync unlock PATH``: hold a file of a synced folder so nobody else
changes it (their copies turn read-only), then let it go. ``vidsync locks DIR`` lists the
project's locks."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
from pathlib import Path

from vidsync.agent.config import NotLoggedIn, load_credentials
from vidsync.agent.locks import holder_name
from vidsync.changes import RESERVED_DIR, normalize_path
from vidsync.client import ApiError, Client, ClientError
from vidsync.text import printable, say

STATE_FILES = ("share.db", "mirror.db")


class Refused(Exception):
    pass


def find_folder(start: Path) -> tuple[Path, dict]:
    """The synced folder holding ``start`` (itself or a parent) and its recorded settings."""
    start = Path(os.path.abspath(start))
    for root in (start, *start.parents):
        for name in STATE_FILES:
            db_path = root / RESERVED_DIR / name
            if db_path.is_file():
                return root, _meta(db_path)
    raise Refused(f"{start} is not in a shared or joined folder")


def project_path(root: Path, target: Path) -> str:
    """``target`` as the project names it (``/``-separated, NFC, from the folder's top)."""
    try:
        return normalize_path(Path(os.path.abspath(target)).relative_to(root).as_posix())
    except ValueError as e:
        raise Refused(f"{target}: not a file of {root} ({e})") from None


def _meta(db_path: Path) -> dict:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    finally:
        db.close()


async def _lock(args: argparse.Namespace, take: bool) -> None:
    creds = load_credentials()
    root, meta = find_folder(Path(args.path).parent)
    path, project_id = project_path(root, Path(args.path)), str(meta.get("project_id"))
    if meta.get("server") != creds.server:
        raise Refused(f"this folder syncs with {meta.get('server')}, but you are logged in to "
                      f"{creds.server}")
    async with Client(creds.server, creds.token) as client:
        if take:
            lock = await client.lock(project_id, path)
            say(f"locked {printable(path)} until {lock.get('expires_at')} (renewed while your "
                f"agent runs); others get a read-only copy")
        else:
            await client.unlock(project_id, path)
            say(f"unlocked {printable(path)}")


async def _list(args: argparse.Namespace) -> None:
    creds = load_credentials()
    _, meta = find_folder(Path(args.dir))
    project_id = str(meta.get("project_id"))
    async with Client(creds.server, creds.token) as client:
        for lock in await client.locks(project_id):
            say(f"{printable(lock['path'])}  by {printable(holder_name(lock))}"
                f"  until {lock.get('expires_at')}")


def _run(coro) -> None:  # noqa: ANN001 - a coroutine
    try:
        asyncio.run(coro)
    except (Refused, NotLoggedIn) as e:
        raise SystemExit(f"vidsync: {printable(e)}") from None
    except ApiError as e:
        if e.code == "locked":
            holder = e.details.get("lock") or e.details
            raise SystemExit(f"vidsync: locked by {printable(holder_name(holder))}"
                             f" ({e.code})") from None
        raise SystemExit(f"vidsync: {printable(e.message)} ({e.code})") from None
    except ClientError as e:
        raise SystemExit(f"vidsync: cannot reach the server: {printable(e)}") from None


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lock", help="lock a file of a synced folder: others' copies turn "
                                           "read-only and their changes to it are refused")
    p.add_argument("path", metavar="PATH", help="a file in a shared or joined folder")
    p.set_defaults(func=lambda a: _run(_lock(a, take=True)))
    p = subparsers.add_parser("unlock", help="release a lock taken with 'vidsync lock'")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=lambda a: _run(_lock(a, take=False)))
    p = subparsers.add_parser("locks", help="list the locks of a synced folder's project")
    p.add_argument("dir", nargs="?", default=".", metavar="DIR")
    p.set_defaults(func=_run_list)


def _run_list(args: argparse.Namespace) -> None:
    _run(_list(args))
