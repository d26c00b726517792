"""Capacity benchmarks of one node and of two: run them all (or some) and print their tables.

    .venv/bin/python bench/capacity/run.py                      # everything, full size
    .venv/bin/python bench/capacity/run.py --scale 0.05         # a quick check of the scripts
    .venv/bin/python bench/capacity/run.py --only storm,ingest  # some of them

Benchmarks (each also runs alone: ``bench/capacity/<name>.py --help``):
  connections  10,000 Socket.IO connections: RSS per connection, fan-out to 1k/5k/10k
               subscribers of one project; ours and the Node socket.io reference
  ingest       events/s appended through files/update, batches of 1/100/1000, SQLite and
               PostgreSQL
  storm        5,000 subscribers drop, fall 100 events behind, reconnect at once: time until
               all caught up, server CPU
  two-nodes    two nodes with PostgreSQL and Redis: latency to a subscriber on the other node

Each starts what it needs on 127.0.0.1 (servers, a scratch PostgreSQL database, a private
redis-server) and stops it. The tables go to stdout, everything measured to
``bench/results/capacity-<time>.json`` (not committed). Exits 1 if any delivery check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import traceback

import connections
import ingest
import storm
import two_nodes
from procs import REPO, load_average, log
from report import common_args, machine, write_results

BENCHMARKS = {"connections": connections, "ingest": ingest, "storm": storm,
              "two-nodes": two_nodes}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    common_args(p)
    p.add_argument("--only", default=",".join(BENCHMARKS),
                   help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    for module in BENCHMARKS.values():
        module.add_args(p)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop what was started
    document = {"machine": machine(), "args": vars(args), "results": {}}
    tables = []
    failed = []
    for name in names:
        module = BENCHMARKS[name]
        before = load_average()
        log(f"== {name} (load average {before})")
        try:
            result = asyncio.run(module.run(args))
        except Exception:  # noqa: BLE001 - the other benchmarks still run; reported below
            traceback.print_exc()
            failed.append(name)
            continue
        result["load_average_before"] = before
        document["results"][name] = result
        tables.append(module.render(result) + f"\n(load average before: {before})")
        if not result.get("passed", True):
            failed.append(name)
    print("\n\n".join(tables))
    log(f"results: {write_results('capacity', document).relative_to(REPO)}")
    if failed:
        log(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
