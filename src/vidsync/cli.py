"""The ``vidsync`` command: one subcommand per job, each defined next to the code it runs.

Only the module of the command being run is imported: the server does not pay for the agents'
libraries (about 20 MB of RSS and a second of start-up), nor an agent for the server's.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vidsync import __version__
from vidsync.text import printable

# command -> the module whose ``add_parsers(subparsers)`` defines it (and its siblings)
COMMANDS = {
    "serve": "vidsync.server.main",
    "gc": "vidsync.server.gc",
    "register": "vidsync.agent.login",
    "login": "vidsync.agent.login",
    "share": "vidsync.agent.share.cli",
    "invite": "vidsync.agent.share.cli",
    "join": "vidsync.agent.mirror.cli",
    "revert": "vidsync.agent.mirror.cli",
    "status": "vidsync.agent.mirror.cli",
    "events": "vidsync.agent.mirror.cli",
    "ls": "vidsync.agent.mirror.cli",
    "history": "vidsync.agent.versions",
    "restore": "vidsync.agent.versions",
    "lock": "vidsync.agent.lock_cli",
    "unlock": "vidsync.agent.lock_cli",
    "locks": "vidsync.agent.lock_cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command``, or for every command (for help and unknown input)."""
    parser = argparse.ArgumentParser(prog="vidsync", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"vidsync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        args.func(args)
    except SystemExit as e:
        # Error messages often quote the server (its error message, a path it sent): escape
        # them like everything else from the network before they reach the terminal.
        if isinstance(e.code, str):
            raise SystemExit(printable(e.code)) from None
        raise
