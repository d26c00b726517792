"""``vidsync history`` and ``vidsync restore``: a synced folder's version history, and undelete.

DIR is a shared or joined folder; its project and server come from the agent's state in
``DIR/.vidsync``. Restoring asks the server to append the change that brings a version back, so
every agent (this folder's included) applies it the usual way: nothing here writes files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vidsync.agent.config import NotLoggedIn, load_credentials
from vidsync.agent.mirror.state import is_mirror
from vidsync.agent.mirror.status import mirror_status
from vidsync.agent.mirror.ui import human_bytes
from vidsync.agent.share.status import share_status
from vidsync.client import ApiError, Client, ClientError
from vidsync.text import say

PAGE = 1000
_AGO_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Refused(Exception):
    """The command cannot run as asked; the message says why."""


def folder_project(root: Path) -> tuple[str, str]:
    """(server, project id) of a shared or joined folder."""
    status = share_status(root) or (mirror_status(root) if is_mirror(root) else None)
    if not status or not status.get("project_id"):
        raise Refused(f"{root} is not a shared or joined folder ('vidsync share' or "
                      "'vidsync join' it first)")
    return str(status["server"]), str(status["project_id"])


def project_path(root: Path, raw: str) -> str:
    """PATH as the project names it: a path inside DIR (absolute, or relative to here) is made
    relative to DIR; anything else is taken as a project path. A trailing '/' means a folder."""
    folder = raw.endswith("/") or raw in (".", "")
    here = Path(os.path.abspath(raw))
    try:
        rel = here.relative_to(root)
    except ValueError:
        rel = None
    if rel is not None:
        text = rel.as_posix()
        if text == ".":
            return "/"
        folder = folder or here.is_dir()
    else:
        text = raw.strip("/")
    return text + "/" if folder else text


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (local time if it has no zone) or an age like ``2h`` / ``3d`` (ago)."""
    now = now or datetime.now(UTC)
    m = _AGO_RE.fullmatch(text.strip())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Refused(f"not a time: {text!r} (use e.g. 2026-05-01T14:30, or 2h for two hours "
                      "ago)") from None
    return when.astimezone(UTC) if when.tzinfo is None else when  # naive: local time


def _created(version: dict) -> datetime:
    return datetime.fromisoformat(version["created_at"].replace("Z", "+00:00"))


async def _versions(client: Client, project_id: str, path: str):  # noqa: ANN202 - async gen
    """Every version of ``path``, newest first, page by page."""
    before = None
    while True:
        page = await client.history(project_id, path, before_seq=before, limit=PAGE)
        for v in page["versions"]:
            yield v
        if not page["has_more"] or not page["versions"]:
            return
        before = page["versions"][-1]["seq"]


async def pick_seq(client: Client, project_id: str, path: str, seq: int | None,
                   before: datetime | None) -> int:
    """The seq to restore: given, or the newest version before a time, or (for a deleted file)
    its last version."""
    if seq is not None:
        return seq
    folder = path.endswith("/")
    latest = None
    async for v in _versions(client, project_id, path):
        latest = latest or v
        if before is not None:
            if _created(v) < before and (folder or v["op"] != "delete"):
                return v["seq"]
        elif not folder:
            if v["op"] == "delete":
                continue  # deleted: its last version
            if v is not latest:
                return v["seq"]
            raise Refused(f"{path} is not deleted: give --seq N or --before TIME "
                          f"('vidsync history DIR {path}' lists its versions)")
    if before is not None:
        raise Refused(f"no version of {path} before {before.isoformat()}")
    raise Refused(f"give --seq N or --before TIME for a folder; nothing found for {path}")


def _show(entry: dict, as_json: bool, version: dict) -> None:
    if as_json:
        print(json.dumps(entry), flush=True)  # JSON escapes controls
    else:
        _print_version(version)


def _print_version(v: dict) -> None:
    size = "" if v["size"] is None else human_bytes(v["size"])
    author = (v.get("author") or {}).get("name") or ""
    kept = "" if v["op"] == "delete" else ("" if v["available"] else "  (expired)")
    say(f"{v['seq']:>8}  {v['created_at']}  {v['op']:<6}  {size:>10}  {author:<16} "
        f" {v['path']}{kept}")


async def _history(args: argparse.Namespace, server: str, project_id: str,
                   path: str) -> None:
    async with _client(server) as client:
        if args.deleted:
            page = await client.deleted(project_id, prefix=path if path != "/" else None,
                                        limit=args.limit)
            for d in page["files"]:
                _show(d, args.json, {**d["last_version"], "created_at": d["deleted_at"]})
            return
        page = await client.history(project_id, path, limit=args.limit)
        for v in page["versions"]:
            _show(v, args.json, v)
        if page["has_more"] and not args.json:
            say(f"(older versions: --limit {min(args.limit * 10, PAGE)})")


async def _restore(args: argparse.Namespace, server: str, project_id: str, path: str) -> None:
    before = parse_time(args.before) if args.before else None
    async with _client(server) as client:
        seq = await pick_seq(client, project_id, path, args.seq, before)
        result = await client.restore(project_id, path, seq)
    if not result["results"]:
        say(f"{path} is already as it was at seq {seq}: nothing to do")
        return
    for r in result["results"]:
        say(f"{r['op']:<6} {r['path']}  (seq {r['seq']})")
    say(f"restored {path} as of seq {seq}: {len(result['results'])} change(s); every synced "
        "folder applies them")


def _client(server: str) -> Client:
    try:
        creds = load_credentials()
    except NotLoggedIn as e:
        raise Refused(str(e)) from None
    if creds.server.rstrip("/") != server.rstrip("/"):
        raise Refused(f"the folder syncs with {server}, but you are logged in to {creds.server}")
    return Client(server, creds.token)


def _run(command, args: argparse.Namespace) -> None:  # noqa: ANN001 - a coroutine function
    """Find DIR's project (before any event loop: it reads the agent's files), then run."""
    try:
        root = Path(args.dir).resolve()
        server, project_id = folder_project(root)
        if args.path:
            path = project_path(root, args.path)
            if getattr(args, "deleted", False):
                path = path if path.endswith("/") else path + "/"
        else:
            path = "/"
        asyncio.run(command(args, server, project_id, path))
    except KeyboardInterrupt:
        sys.exit(130)
    except Refused as e:
        sys.exit(f"vidsync: {e}")
    except ApiError as e:
        sys.exit(f"vidsync: {e.message} ({e.code})")
    except ClientError as e:
        sys.exit(f"vidsync: cannot reach the server: {e}")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("history", help="a synced folder's version history (or a file's)")
    p.add_argument("dir", metavar="DIR", help="a shared or joined folder")
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="a file, or a folder ending in '/' (default: everything)")
    p.add_argument("--deleted", action="store_true", help="list deleted files instead")
    p.add_argument("--limit", type=int, default=50, choices=range(1, PAGE + 1),
                   metavar="N", help="at most N entries (default 50, at most 1000)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=lambda args: _run(_history, args))

    p = subparsers.add_parser(
        "restore", help="bring back a file's earlier version, a deleted file, or a folder as it was",
        description="Restore PATH (a file, or a folder ending in '/') in a shared or joined "
                    "folder DIR. A folder is made to match what it held then: files created in it "
                    "since are deleted (they stay in the history). With neither --seq nor --before, "
                    "a deleted file comes back at its last version.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("path", metavar="PATH")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seq", type=int, metavar="N", help="the version (seq from 'history')")
    which.add_argument("--before", metavar="TIME",
                       help="the newest version before TIME (2026-05-01T14:30, or 2h ago)")
    p.set_defaults(func=lambda args: _run(_restore, args))
