"""The ``vidsync`` command: one subcommand per job, each defined next to the code it runs."""

from __future__ import annotations

import argparse

from vidsync import __version__
from vidsync.server import main as server_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidsync", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vidsync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    server_main.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
