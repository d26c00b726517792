"""``vidsync share DIR`` and ``vidsync invite DIR_OR_PROJECT`` (the owner's commands)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from vidsync.agent.config import Credentials, NotLoggedIn, load_credentials
from vidsync.agent.folder import FolderAgent, path_policy
from vidsync.agent.mirror.engine import AgentStopped
from vidsync.agent.mirror.state import MirrorState
from vidsync.agent.mirror.ui import Ui
from vidsync.agent.share.agent import AlreadyRunning, ShareOptions, ensure_project, lock_folder
from vidsync.agent.share.state import DB_NAME, ShareState, state_dir
from vidsync.agent.share.sync import Fatal
from vidsync.client import ApiError, Client, ClientError
from vidsync.text import log_to_stderr, say


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _positive(value: str) -> float:
    f = float(value)
    if f <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return f


def share(args: argparse.Namespace) -> None:
    log_to_stderr(args.log_level, "%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch at INFO
    try:
        creds = load_credentials()
        run_share(Path(args.dir), creds, send_options(args, name=args.name))
    except (NotLoggedIn, AlreadyRunning, Fatal, AgentStopped) as e:
        sys.exit(f"vidsync: {e}")


def send_options(args: argparse.Namespace, name: str | None = None) -> ShareOptions:
    return ShareOptions(name=name, debounce_s=args.debounce, settle_s=args.settle,
                        rescan_s=args.rescan_interval, heartbeat_s=args.heartbeat)


def run_share(root: Path, creds: Credentials, options: ShareOptions) -> None:
    """Run the owner's folder both ways until SIGINT/SIGTERM (exit quietly) or a fatal error."""
    root = root.resolve()
    if not root.is_dir():
        raise Fatal(f"{root} is not a directory")
    lock = lock_folder(root)
    try:
        asyncio.run(_share(root, creds, options))
    finally:
        os.close(lock)


async def _share(root: Path, creds: Credentials, options: ShareOptions) -> None:
    state = MirrorState(root, DB_NAME)
    async with Client(creds.server, creds.token) as client:
        share = ShareState(root, mirror=state)
        await ensure_project(client, share, creds, root, options.name)
        agent = FolderAgent(root, client, state, Ui(), path_policy(state, root), options)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await agent.run(stop)
        finally:
            agent.close()
            state.close()


async def _invite(creds, project_id: str, expires_in_s: int | None, max_uses: int | None) -> dict:
    async with Client(creds.server, creds.token) as client:
        return await client.create_invite(project_id, expires_in_s, max_uses)


def project_of(target: str) -> str:
    """A shared folder's project id, or ``target`` itself taken as a project id."""
    path = Path(target)
    if (state_dir(path) / DB_NAME).exists():
        state = ShareState(path.resolve(), readonly=True)
        try:
            project_id = state.get("project_id")
        finally:
            state.close()
        if project_id:
            return str(project_id)
    if path.is_dir():
        sys.exit(f"vidsync: {target} is not shared yet; run 'vidsync share {target}' first")
    return target


def invite(args: argparse.Namespace) -> None:
    try:
        creds = load_credentials()
    except NotLoggedIn as e:
        sys.exit(f"vidsync: {e}")
    project_id = project_of(args.target)
    try:
        inv = asyncio.run(_invite(creds, project_id, args.expires_in, args.max_uses))
    except ApiError as e:
        sys.exit(f"vidsync: {e.message} ({e.code})")
    except ClientError as e:
        sys.exit(f"vidsync: cannot reach {creds.server}: {e}")
    say(f"code: {inv['code']}")
    say(f"link: {creds.server}/join/{inv['code']}")
    uses = "unlimited uses" if inv.get("max_uses") is None else f"{inv['max_uses']} use(s)"
    say(f"expires: {inv['expires_at']} ({uses})")


def add_send_arguments(p: argparse.ArgumentParser) -> None:
    """The sending half's settings (``vidsync share``, and ``vidsync join`` for an editor)."""
    p.add_argument("--debounce", type=_positive, metavar="SECONDS",
                   default=_env_float("VIDSYNC_DEBOUNCE", 0.5),
                   help="changes within this window go out as one batch (default 0.5)")
    p.add_argument("--settle", type=_positive, metavar="SECONDS",
                   default=_env_float("VIDSYNC_SETTLE", 0.25),
                   help="a file must stop changing this long before it is hashed (default 0.25)")
    p.add_argument("--rescan-interval", type=_positive, metavar="SECONDS",
                   default=_env_float("VIDSYNC_RESCAN_INTERVAL", 600.0),
                   help="full rescan period, to catch what the watcher missed (default 600)")
    p.add_argument("--heartbeat", type=_positive, metavar="SECONDS", default=30.0,
                   help="while idle, check the server this often (default 30)")



def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("share", help="share a folder live: create or reuse its project, "
                                            "upload it, then keep it in sync both ways")
    p.add_argument("dir", help="the folder to share")
    p.add_argument("--name", help="the project's name when it is created (default: folder name)")
    add_send_arguments(p)
    p.add_argument("--log-level", default=os.environ.get("VIDSYNC_LOG_LEVEL", "info"))
    p.set_defaults(func=share)

    p = subparsers.add_parser("invite", help="print a new invite code and link for a project")
    p.add_argument("target", metavar="DIR_OR_PROJECT", help="a shared folder or a project id")
    p.add_argument("--expires-in", type=int, metavar="SECONDS", help="default: the server's (7 days)")
    p.add_argument("--max-uses", type=int)
    p.set_defaults(func=invite)
