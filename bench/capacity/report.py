"""Figures and tables: percentiles, units, the plain-text tables each benchmark prints, the
JSON file a run leaves in ``bench/results/``, and the command line every benchmark shares."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from procs import DEFAULT_POSTGRES, REPO, load_average, log

RESULTS = REPO / "bench" / "results"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def summary(values: Sequence[float]) -> dict:
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values) if values else None}


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f} ms" if x < 10_000 else f"{x / 1000:,.1f} s"


def kib(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f} KiB"


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def table(title: str, rows: list[tuple]) -> str:
    """A plain-text table; the first row is the header."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = [title]
    for i, row in enumerate(cells):
        lines.append(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def scaled(n: int, scale: float, least: int = 1) -> int:
    return max(least, round(n * scale))


def machine() -> dict:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "node": node, "commit": commit,
            "load_average_at_start": load_average()}


def write_results(name: str, document: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply connection, subscriber and event counts (0.1 for a quick check)")
    p.add_argument("--procs", type=int, default=4, help="load generator processes")
    p.add_argument("--postgres", default=DEFAULT_POSTGRES,
                   help="PostgreSQL server (and database) to create scratch databases from")


Runner = Callable[[argparse.Namespace], Awaitable[dict]]


def standalone(name: str, doc: str, add_args: Callable[[argparse.ArgumentParser], None],
               run: Runner, render: Callable[[dict], str]) -> None:
    """``main()`` of one benchmark run on its own: parse, run, print, save; exit 1 on a failed
    check."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    common_args(p)
    add_args(p)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop what was started
    result = asyncio.run(run(args))
    result["machine"] = machine()
    print(render(result))
    log(f"results: {write_results(name, result).relative_to(REPO)}")
    sys.exit(0 if result.get("passed", True) else 1)
