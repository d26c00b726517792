"""The ``vidsync`` command: one subcommand per job, each defined next to the code it runs."""

from __future__ import annotations

import argparse

from vidsync import __version__
from vidsync.agent import login as agent_login
from vidsync.agent.mirror import cli as mirror_cli
from vidsync.agent.share import cli as share_cli
from vidsync.server import main as server_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidsync", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vidsync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    server_main.add_parser(sub)
    agent_login.add_parsers(sub)
    share_cli.add_parsers(sub)
    mirror_cli.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
