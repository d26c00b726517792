"""``vidsync login`` and ``vidsync register``: get a token and keep it in the user's config.

The password comes from a prompt (never echoed, never an argument, so it stays out of shell
history and ``ps``), or from ``VIDSYNC_PASSWORD`` for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from vidsync.agent.config import Credentials, normalize_server, save_credentials
from vidsync.client import ApiError, Client, ClientError
from vidsync.text import say


def _password(confirm: bool) -> str:
    from_env = os.environ.get("VIDSYNC_PASSWORD")
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        sys.exit("vidsync: no terminal to ask for the password; set VIDSYNC_PASSWORD")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Password (again): ") != password:
        sys.exit("vidsync: the passwords differ")
    return password


async def _authenticate(server: str, email: str, password: str, name: str | None,
                        register: bool) -> dict:
    async with Client(server) as client:
        if register:
            return await client.register(email, password, name)
        return await client.login(email, password)


def _run(args: argparse.Namespace, register: bool) -> None:
    if not args.server:
        sys.exit("vidsync: give --server URL (or set VIDSYNC_SERVER)")
    try:
        server = normalize_server(args.server)
    except ValueError as e:
        sys.exit(f"vidsync: {e}")
    password = _password(confirm=register)
    try:
        out = asyncio.run(_authenticate(server, args.email, password,
                                        getattr(args, "name", None), register))
    except ApiError as e:
        sys.exit(f"vidsync: {e.message} ({e.code})")
    except ClientError as e:
        sys.exit(f"vidsync: cannot reach {server}: {e}")
    path = save_credentials(Credentials(server, out["token"], out["user"]["email"]))
    action = "Registered and logged in" if register else "Logged in"
    say(f"{action} as {out['user']['email']} on {server} (token saved in {path})")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    server = os.environ.get("VIDSYNC_SERVER")
    for cmd, help_ in (("login", "log in to a Vidsync server and remember the token"),
                       ("register", "create an account on a Vidsync server and log in")):
        p = subparsers.add_parser(cmd, help=help_)
        p.add_argument("--server", default=server, help="e.g. http://127.0.0.1:5000")
        p.add_argument("--email", required=True)
        if cmd == "register":
            p.add_argument("--name", help="your display name (default: from the email)")
        p.set_defaults(func=lambda a, r=(cmd == "register"): _run(a, r))
