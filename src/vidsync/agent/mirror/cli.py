"""``vidsync join``, ``revert``, ``status`` and ``events``: the collaborator's commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from vidsync import sequences
from vidsync.agent import lockfile
from vidsync.agent.config import Credentials, NotLoggedIn, load_credentials
from vidsync.agent.folder import FolderAgent, path_policy
from vidsync.agent.mirror.engine import AgentStopped, MirrorAgent
from vidsync.agent.mirror.revert import move_edits_aside
from vidsync.agent.mirror.state import MirrorState, is_mirror, state_dir
from vidsync.agent.mirror.status import AGENT_LOCK, mirror_status
from vidsync.agent.mirror.ui import Ui, human_bytes
from vidsync.agent.share.cli import add_send_arguments, send_options
from vidsync.agent.share.status import share_status
from vidsync.changes import normalize_prefixes
from vidsync.client import ApiError, Client, ClientError, ProjectRemoved, ServerUnreachable
from vidsync.errors import ApiError as BadInput
from vidsync.text import log_to_stderr, say


class Refused(Exception):
    """The command cannot run as asked; the message says why and what to do."""


def _credentials() -> Credentials:
    try:
        return load_credentials()
    except NotLoggedIn as e:
        raise Refused(str(e)) from None


def _prefixes(only: list[str] | None) -> list[str]:
    try:
        return list(normalize_prefixes(only))
    except BadInput as e:
        raise Refused(e.message) from None


def _lock_agent(state: MirrorState) -> int:
    """Hold the folder's agent lock for the life of the process: one join agent per mirror."""
    fd = lockfile.hold(state.dir / AGENT_LOCK)
    if fd is None:
        raise Refused(f"a join agent is already running for {state.dir.parent}")
    return fd


# -- join -----------------------------------------------------------------------------------------

async def _join(root: Path, invite: str | None, args: argparse.Namespace) -> None:
    creds = _credentials()
    only = _prefixes(args.only)
    async with Client(creds.server, creds.token) as client:
        role = None
        if is_mirror(root):
            state = MirrorState(root)
            if args.only is not None:
                state.put(prefixes=only)
        else:
            if invite is None:
                raise Refused(f"{root} is not a mirror yet: give the invite code or link first")
            _check_invite_server(invite, creds.server)
            joined = await client.join(invite)
            role = joined.get("role")
            state = MirrorState(root)
            state.put(server=creds.server, project_id=joined["project"]["id"],
                      project_name=joined["project"]["name"], prefixes=only)
        if state.get("server") != creds.server:
            raise Refused(f"{root} mirrors a project on {state.get('server')}, but you are logged "
                          f"in to {creds.server}")
        lock_fd = _lock_agent(state)
        ui = Ui()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Receive-only because of the role, not by choice: becoming an editor restarts it both ways.
        may_promote = not (args.receive_only or args.once or state.get("prefixes"))
        try:
            with ui:
                while not stop.is_set():
                    two_way = await _two_way(client, state, role, args)
                    role = None  # a restart asks the server again
                    agent = FolderAgent(root, client, state, ui, path_policy(state, root),
                                        send_options(args) if two_way else None, may_promote)
                    ui.message(f"{'syncing' if two_way else 'mirroring'} project "
                               f"{state.get('project_name')!r} into {root}"
                               + (" both ways" if two_way else ", receive-only")
                               + (f" (only {', '.join(state.get('prefixes') or [])})"
                                  if state.get("prefixes") else ""))
                    try:
                        await agent.run(stop, follow=not args.once)
                    finally:
                        agent.close()
                    if not agent.promoted:
                        break
        finally:
            state.close()
            os.close(lock_fd)


async def _two_way(client: Client, state: MirrorState, role: str | None,
                   args: argparse.Namespace) -> bool:
    """Whether this folder sends as well as receives: an editor's (or the owner's) membership,
    unless ``--receive-only``, ``--once`` or ``--only`` (a two-way folder is the whole project)."""
    if args.receive_only or args.once:
        return False
    if role is None:
        try:
            role = (await client.project(str(state.get("project_id"))))["role"]
        except ServerUnreachable:
            role = state.get("role")  # offline start: as last seen
    state.put(role=role)
    if role not in ("owner", "editor"):
        return False
    if state.get("prefixes"):
        raise Refused("--only mirrors part of a project, so it needs --receive-only (a folder "
                      "that sends changes holds the whole project)")
    return True


def _check_invite_server(invite: str, server: str) -> None:
    """An invite link names its server: it must be the one we are logged in to."""
    if "://" not in invite:
        return
    link = urlsplit(invite)
    mine = urlsplit(server)
    if (link.scheme, link.netloc) != (mine.scheme, mine.netloc):
        raise Refused(f"this invite is for {link.scheme}://{link.netloc}; log in there first: "
                      f"vidsync login --server {link.scheme}://{link.netloc}")


def join(args: argparse.Namespace) -> None:
    if len(args.where) > 2:
        sys.exit("vidsync: give an invite and a folder, or only the folder to resume")
    invite, folder = (None, args.where[0]) if len(args.where) == 1 else args.where
    root = Path(folder).resolve()
    if (state_dir(root) / "share.db").exists():
        sys.exit(f"vidsync: {root} is a shared folder (the owner's side); join into another folder")
    root.mkdir(parents=True, exist_ok=True)
    _run(_join(root, invite, args))


# -- revert ---------------------------------------------------------------------------------------

async def _revert(root: Path, args: argparse.Namespace) -> None:
    state = MirrorState(root)
    if state.get("mode") == "two-way":
        state.close()
        # Nothing here is held back from the project: moving a file aside would be sent as its
        # deletion. Going back is the project's history, for every member at once.
        raise Refused(f"{root} syncs both ways: what is changed here is sent, not kept aside, "
                      f"so there is nothing to revert. To go back to an earlier version: "
                      f"'vidsync history {root} PATH', then 'vidsync restore {root} PATH --seq N'")
    creds = _credentials()
    only = [p.rstrip("/") for p in args.paths] or None
    ui = Ui()
    async with Client(creds.server, creds.token) as client:
        agent = MirrorAgent(root, client, state, ui, path_policy(state, root))
        try:
            moved = await move_edits_aside(agent.applier, only)
            if not moved:
                ui.message("no local edits: the mirror holds the owner's version")
                return
            for path, where in moved:
                ui.line("reverting", path, f"your copy is kept in {where}" if where else "")
            state.retry_now()
            try:
                await agent.reconcile(until_idle=True)
            except ClientError as e:
                raise Refused(f"the edits are set aside but the owner's version could not be "
                              f"fetched ({e}); a running 'vidsync join' will fetch it") from None
        finally:
            agent.close()
            state.close()


def revert(args: argparse.Namespace) -> None:
    root = Path(args.dir).resolve()
    if not is_mirror(root):
        sys.exit(f"vidsync: {root} is not a mirror (run 'vidsync join' into it first)")
    _run(_revert(root, args))


# -- status ---------------------------------------------------------------------------------------

def status(args: argparse.Namespace) -> None:
    root = Path(args.dir).resolve()
    report: dict = {}
    if is_mirror(root):
        report["mirror"] = mirror_status(root)
    shared = share_status(root)
    if shared is not None:
        report["share"] = shared
    if not report:
        sys.exit(f"vidsync: {root} is neither a shared folder nor a mirror")
    if args.json:
        print(json.dumps(report, indent=2))
        return
    if "share" in report:
        _print_share(report["share"])
    if "mirror" in report:
        _print_mirror(report["mirror"])


def _print_mirror(m: dict) -> None:
    say(f"mirror of {m['project_name']!r} ({m['project_id']}) on {m['server']}, {m['mode']}")
    say(f"  folder:            {m['dir']}")
    if m["only"]:
        say(f"  only:              {', '.join(m['only'])}")
    say(f"  connection:        {m['connection']}" + (f" (pid {m['agent_pid']})" if m["agent_pid"] else ""))
    say(f"  last seq:          {m['last_seq']}")
    say(f"  queued uploads:    {m['queued_uploads']}")
    _print_conflicts(m)
    say(f"  pending downloads: {m['pending_downloads']} ({human_bytes(m['pending_bytes'])})")
    for path in m["transferring"]:
        say(f"    transferring {path}")
    if m["mode"] == "two-way":
        say(f"  changed here:      {len(m['local_edits'])}"
              + (" (being sent; the server's changes wait for them)" if m["local_edits"] else ""))
    else:
        say(f"  local edits:       {len(m['local_edits'])}"
              + (" (not sent; 'vidsync revert' restores the owner's version)"
                 if m["local_edits"] else ""))
    for path, kind in m["local_edits"].items():
        say(f"    {kind:<9} {path}")
    if m["failures"]:
        say(f"  failing:           {len(m['failures'])}")
        for path, error in m["failures"].items():
            say(f"    {path}: {error}")


def _print_conflicts(s: dict) -> None:
    say(f"  conflict copies:   {len(s['conflicts'])}"
        + (" (both versions kept; delete or rename a copy once resolved)" if s["conflicts"] else ""))
    for path in s["conflicts"]:
        say(f"    {path}")
    if s["conflicts_kept_here"]:
        say(f"  kept only here:    {len(s['conflicts_kept_here'])} (in .vidsync/conflicts/: "
            "too many conflict copies of one file)")


def _print_share(s: dict) -> None:
    say(f"shared as {s['project_name']!r} ({s['project_id']}) on {s['server']}")
    state = "agent not running"
    if s["agent_running"]:
        state = {True: "connected", False: "server unreachable", None: "starting"}[s["server_reachable"]]
    say(f"  connection:        {state}")
    say(f"  last seq:          {s['last_posted_seq']}")
    say(f"  queued uploads:    {s['queued_changes']} changes"
        + (f", {len(s['uploads'])} uploading" if s["uploads"] else ""))
    for up in s["uploads"]:
        say(f"    uploading {up['path']} ({human_bytes(up['sent'])} of {human_bytes(up['size'])})")
    say(f"  last seq received: {s['last_seq']}")
    _print_conflicts(s)
    if s["last_error"]:
        say(f"  last error:        {s['last_error']}")


# -- events ---------------------------------------------------------------------------------------

async def _events(args: argparse.Namespace) -> None:
    creds = _credentials()
    only = _prefixes(args.only) or None
    async with Client(creds.server, creds.token) as client:
        project_id = await _project_id(client, args.project)
        since = args.since
        if since is None:
            since = (await client.events(project_id, 0, limit=1))["last_seq"] if args.follow else 0
        if not args.follow:
            while True:
                page = await client.events(project_id, since, limit=1000, paths=only)
                for event in page["events"]:
                    _print_event(event, args.json)
                since = page["last_seq"] if not page["events"] else page["events"][-1]["seq"]
                if not page["has_more"]:
                    return
        async with client.follow(project_id, since, only) as follower:
            async for event in follower:
                _print_event(event, args.json)


async def _project_id(client: Client, name_or_id: str) -> str:
    """A project id, or the id of the one project of yours with that name."""
    projects = await client.projects()
    if any(p["id"] == name_or_id for p in projects):
        return name_or_id
    named = [p for p in projects if p["name"] == name_or_id]
    if len(named) == 1:
        return named[0]["id"]
    if named:
        raise Refused(f"{len(named)} of your projects are named {name_or_id!r}: give its id")
    raise Refused(f"no project {name_or_id!r} among yours ('vidsync join' it first)")


def _print_event(event: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(event), flush=True)  # JSON escapes controls
        return
    ch = event["change"]
    size = "" if ch.get("size") is None else human_bytes(ch["size"])
    say(f"{event['seq']:>8}  {event.get('created_at', '')}  {ch['op']:<6}  {ch['path']}"
        + (f"  {size}" if size else ""), flush=True)


def events(args: argparse.Namespace) -> None:
    _run(_events(args))


async def _ls(args: argparse.Namespace) -> None:
    creds = _credentials()
    async with Client(creds.server, creds.token) as client:
        project_id = await _project_id(client, args.project)
        files = (await client.files(project_id, _prefixes(args.prefix) or None))["files"]
    entries = files if args.frames else sequences.group(files, lambda f: f["path"])
    for entry in entries:
        if isinstance(entry, sequences.Sequence):
            row = {"path": entry.path, "frames": len(entry.frames), "missing": entry.missing,
                   "first": entry.first.frame, "last": entry.last.frame,
                   "size": sum(f["size"] for f in entry.frames),
                   "mtime": max((f["mtime"] for f in entry.frames if f["mtime"] is not None),
                                default=None)}
        else:
            row = entry
        if args.json:
            print(json.dumps(row), flush=False)  # JSON escapes controls
            continue
        when = "" if row["mtime"] is None else datetime.fromtimestamp(
            row["mtime"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        note = ""
        if "frames" in row:
            note = f"  ({row['frames']:,} frames" + (
                f", {row['missing']:,} missing)" if row["missing"] else ")")
        say(f"{human_bytes(row['size']):>10}  {when:<16}  {row['path']}{note}")


def ls(args: argparse.Namespace) -> None:
    _run(_ls(args))


# -- wiring ---------------------------------------------------------------------------------------

def _run(coro) -> None:  # noqa: ANN001 - a coroutine
    log_to_stderr(os.environ.get("VIDSYNC_LOG_LEVEL", "warning"),
                  "%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        sys.exit(130)
    except (Refused, AgentStopped) as e:
        sys.exit(f"vidsync: {e}")
    except ProjectRemoved as e:
        sys.exit(f"vidsync: no longer a member of the project ({e.reason})")
    except ApiError as e:
        sys.exit(f"vidsync: {e.message} ({e.code})")
    except ClientError as e:
        sys.exit(f"vidsync: cannot reach the server: {e}")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "join", help="join a project with an invite and sync it into a folder, live",
        description="Join with an invite code or link, download every file, then apply each change "
                    "as it happens; an editor's folder also sends the changes made in it. Run "
                    "again with only DIR to resume. A code that starts with '-' goes after '--': "
                    "vidsync join -- -CODE DIR.")
    p.add_argument("where", nargs="+", metavar="[INVITE] DIR",
                   help="an invite code or link, then the folder (only the folder to resume)")
    p.add_argument("--only", action="append", metavar="PREFIX",
                   help="mirror only this folder of the project (repeatable)")
    p.add_argument("--once", action="store_true",
                   help="receive what changed, then exit instead of following")
    p.add_argument("--receive-only", action="store_true",
                   help="an editor's folder that only receives, like a viewer's mirror")
    add_send_arguments(p)
    p.set_defaults(func=join)

    p = subparsers.add_parser("revert", help="undo local edits in a mirror: restore the owner's "
                                             "version (edited copies go to DIR/.vidsync/trash/)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("paths", nargs="*", metavar="PATH", help="only these files or folders")
    p.set_defaults(func=revert)

    p = subparsers.add_parser("status", help="what the agent of a folder is doing (share or mirror)")
    p.add_argument("dir", nargs="?", default=".", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=status)

    p = subparsers.add_parser("events", help="print a project's events; --follow prints them live")
    p.add_argument("project", metavar="PROJECT", help="a project id or name")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events, like tail -f")
    p.add_argument("--since", type=int, metavar="SEQ",
                   help="start after this seq (default: the beginning, or now with --follow)")
    p.add_argument("--only", action="append", metavar="PREFIX", help="only events under this folder")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=events)

    p = subparsers.add_parser(
        "ls", help="list a project's files; a frame sequence is one line",
        description="List the project's live files (size, modification time in UTC, path). The "
                    "frames of an image sequence show as one line, e.g. "
                    "sh010_comp.[0000001-0014400].exr (14,400 frames); --frames lists each.")
    p.add_argument("project", metavar="PROJECT", help="a project id or name")
    p.add_argument("prefix", nargs="*", metavar="FOLDER", help="only files under these folders")
    p.add_argument("--frames", action="store_true", help="list every frame of a sequence")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=ls)
