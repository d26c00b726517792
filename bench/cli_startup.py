"""How long a `vidsync` command takes to start: the CLI run on a folder that is neither shared
nor joined (it imports what every command imports, then exits), beside a bare Python start.

    .venv/bin/python bench/cli_startup.py --runs 15
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from vidsync.testing import VIDSYNC


def timed(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        for name, command in (("python -c pass (reference)", [sys.executable, "-c", "pass"]),
                              ("vidsync status <empty folder>", [*VIDSYNC, "status", empty])):
            times = timed(command, args.runs)
            print(f"{name:<32} median {statistics.median(times) * 1000:6.0f} ms, "
                  f"min {min(times) * 1000:6.0f} ms, max {max(times) * 1000:6.0f} ms "
                  f"({args.runs} runs)")


if __name__ == "__main__":
    main()
