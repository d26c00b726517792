"""What opening a large project costs the server besides its tree: ``GET /api/projects/:id`` (the
project, its members and its storage usage) and ``GET files/deleted`` (the deleted files' first
page), at 100,000 files.

A fresh ``vidsync serve`` gets a project ingested as bench/web_tree.py does (the same layout, one
small stored content, batches of 1,000 through the API), then 1% of its files deleted in one
batch. Each request is timed from the client (wall) and in the server's CPU time (user + system
from /proc, ticks of 10 ms, so summed over ``--repeat`` requests): first the project's first
answer, then ``--repeat`` more of each, then the first answer again after a restart on the same
data (after one other request, which pays the new process's first-request costs). The server's
CPU time leaves out PostgreSQL's own.

    .venv/bin/python bench/project_open.py [--sizes 100000] [--repeat 20] [--database URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from web_tree import BATCH, ROOT, Api, layout, setup

from vidsync.testing import ServerProcess

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def timed(server: ServerProcess, api: Api, path: str, token: str, n: int) -> tuple[float, float]:
    """Median wall ms of ``n`` GETs, and the server's CPU ms per GET over them."""
    walls = []
    cpu = cpu_s(server.pid)
    for _ in range(n):
        started = time.perf_counter()
        api.call("GET", path, token)
        walls.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls), (cpu_s(server.pid) - cpu) * 1000 / n


def run(n: int, repeat: int, database: str | None) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory(prefix="vidsync-open-") as data:
        server = ServerProcess(Path(data), database=database, cwd=ROOT, quiet=True).start()
        try:
            api = Api(server.url)
            owner, viewer, project, _ = setup(api, n)
            base = f"/api/projects/{project}"
            gone = layout(n)[::100]
            for i in range(0, len(gone), BATCH):
                api.call("POST", f"{base}/files/update", owner, {"changes": [
                    {"path": p, "op": "delete"} for p in gone[i:i + BATCH]]})
            rows = [("GET project, first", *timed(server, api, base, viewer, 1)),
                    ("GET project", *timed(server, api, base, viewer, repeat)),
                    ("GET files/deleted", *timed(server, api, f"{base}/files/deleted",
                                                 viewer, repeat))]
            server.stop()
            server.start(timeout=120)
            api.call("GET", "/api/projects", viewer)  # the first request's own start-up costs
            rows.append(("GET project, first after restart",
                         *timed(server, api, base, viewer, 1)))
            return rows
        finally:
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100000")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--database", help="a PostgreSQL URL (default: SQLite in the data dir)")
    args = p.parse_args()
    for n in map(int, args.sizes.split(",")):
        rows = run(n, args.repeat, args.database)
        load = os.getloadavg()
        print(f"\n{n:,} files, {n + n // 100:,} events, "
              f"{'PostgreSQL' if args.database else 'SQLite'}, "
              f"load average {load[0]:.2f} {load[1]:.2f}")
        print(f"{'request':<34} {'wall p50':>9} {'server CPU':>11}")
        for name, wall, cpu in rows:
            print(f"{name:<34} {wall:>7.1f}ms {cpu:>9.1f}ms")


if __name__ == "__main__":
    main()
