"""Garbage-collector benchmark: collector time and memory for a project of 1 million blocks, and
live fan-out while collections run (p99 must stay within 1.2x of the same server not collecting).

    .venv/bin/python bench/gc.py [--blocks 1000000] [--subscribers 500] [--events 1000]
                                 [--repeat 2] [--skip-fanout]

1. Builds a data directory (SQLite and a blob directory) with one project of ``--blocks`` blocks
   in manifests of 100 blocks, four versions per path: two replaced 60+ days ago (expired), one
   replaced a day ago (history), one live. Blocks are empty files: the collector's work is per
   file (list, stat, unlink), not per byte, and a million real blocks would need terabytes.
2. Runs ``vidsync gc`` on it as the server would (``--dry-run`` first: the mark alone, which is
   also how usage is measured), then for real (half the blocks go), then again (nothing to do),
   each as a child process whose peak RSS is read from ``wait4``.
3. Runs bench/fanout.py's vidsync run (same harness, same load generator) against a server on
   that data directory twice per round: collecting every second (``--gc-interval 1s``: one
   collection after another, for the whole run) and not collecting (``--gc-interval 0``),
   interleaved, and prints both p99s and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import fanout  # noqa: E402 - the fan-out harness, reused as is

from vidsync.changes import Change  # noqa: E402
from vidsync.store.base import Author  # noqa: E402
from vidsync.store.sqlite import SqliteStore  # noqa: E402

PER_MANIFEST = 100
VERSIONS = 4
DAY = timedelta(days=1)
# Version i of a path was written this long ago: 0 and 1 were replaced 95 and 60 days ago
# (outside a 30-day retention), 2 a day ago (history), 3 is live.
AGES = (100 * DAY, 95 * DAY, 60 * DAY, DAY)


def log(message: str) -> None:
    print(f"[gc] {message}", file=sys.stderr, flush=True)


def block_hash(n: int) -> str:
    return hashlib.sha256(n.to_bytes(8, "big")).hexdigest()


async def populate(data_dir: Path, blocks: int) -> dict:
    """The big project: its events in SQLite, its manifests and (empty) blocks on disk."""
    store = await SqliteStore.open(str(data_dir / "vidsync.db"))
    user = await store.create_user("gc-bench@example.com", "gc bench", "x")
    assert user is not None
    project_id = "gc-bench-project"
    now = datetime.now(UTC)
    await store.create_project(project_id, user.id, "gc bench", "", now - 101 * DAY)
    root = data_dir / "blobs" / project_id
    (root / "manifests").mkdir(parents=True)
    for prefix in range(256):
        (root / "blocks" / f"{prefix:02x}").mkdir(parents=True)
    manifests = blocks // PER_MANIFEST
    started = time.monotonic()
    by_version: list[list[Change]] = [[] for _ in range(VERSIONS)]
    blocks_dir = f"{root}/blocks/"
    for m in range(manifests):
        refs = []
        for b in range(m * PER_MANIFEST, (m + 1) * PER_MANIFEST):
            h = block_hash(b)
            os.close(os.open(f"{blocks_dir}{h[:2]}/{h}", os.O_CREAT | os.O_WRONLY, 0o644))
            refs.append({"hash": h, "size": 1})
        file_hash = hashlib.sha256(f"file {m}".encode()).hexdigest()
        (root / "manifests" / f"{file_hash}.json").write_bytes(orjson.dumps(
            {"hash": file_hash, "size": PER_MANIFEST, "blocks": refs}))
        version = m % VERSIONS
        by_version[version].append(Change(f"clips/file{m // VERSIONS:06d}.mov",
                                          "update" if version else "create", file_hash,
                                          PER_MANIFEST, 1))
        if m % 1000 == 0 and m:
            log(f"{m * PER_MANIFEST:,} blocks written")
    author = Author(user.id, user.name)
    for version, changes in enumerate(by_version):
        for i in range(0, len(changes), 1000):
            await store.append_events(project_id, changes[i:i + 1000], now - AGES[version],
                                      None, f"v{version}-{i}", author=author)
    await store.close()
    log(f"{blocks:,} blocks in {manifests:,} manifests written in "
        f"{time.monotonic() - started:.0f} s")
    return {"blocks": blocks, "manifests": manifests, "events": manifests}


def timed_gc(data_dir: Path, *extra: str) -> dict:
    """One ``vidsync gc`` child: its wall time, peak RSS and report."""
    argv = [str(Path(sys.executable).parent / "vidsync"), "gc", "--data-dir", str(data_dir),
            "--gc-grace", "0", "--json", *extra]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    if status != 0:
        raise RuntimeError(f"vidsync gc failed ({status})")
    report = json.loads(out)
    big = next(p for p in report["projects"] if p["project_id"] == "gc-bench-project")
    return {"seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024,
            "removed_blocks": big["removed_blocks"], "live_bytes": big["live_bytes"],
            "history_bytes": big["history_bytes"], "reclaimable_bytes": big["reclaimable_bytes"]}


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=1_000_000)
    p.add_argument("--subscribers", type=int, default=500)
    p.add_argument("--events", type=int, default=1000, help="changes posted per fan-out run")
    p.add_argument("--interval-ms", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=2, help="rounds of the two fan-out runs")
    p.add_argument("--skip-fanout", action="store_true")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vidsync-gc-"))
    data_dir = workdir / "data"
    data_dir.mkdir()
    try:
        sizes = asyncio.run(populate(data_dir, args.blocks))
        rows = []
        for label, extra in (("mark only (--dry-run, = measuring usage)", ("--dry-run",)),
                             ("collection removing half", ()), ("collection, nothing to do", ())):
            log(f"{label}: {load()}")
            r = timed_gc(data_dir, *extra)
            rows.append((label, r))
            print(f"{label:<42} {r['seconds']:7.1f} s ({r['cpu_seconds']:.1f} CPU-s)  peak RSS "
                  f"{r['peak_rss_mib']:6.0f} MiB  "
                  f"removed {r['removed_blocks']:>9,} blocks", flush=True)
        print(f"({sizes['blocks']:,} blocks, {sizes['manifests']:,} manifests; {load()})")
        if args.skip_fanout:
            return 0
        fanout.ensure_npm_deps(fanout.LOADGEN)
        run_args = argparse.Namespace(subscribers=args.subscribers, events=args.events,
                                      interval_ms=args.interval_ms, procs=2, post_mode="open",
                                      drain_timeout_s=120.0)
        p99: dict[str, list[float]] = {"not collecting": [], "collecting": []}
        for _ in range(args.repeat):
            for label, server_args in (("collecting", ("--gc-interval", "1s")),
                                       ("not collecting", ("--gc-interval", "0"))):
                log(f"fan-out, {label}: {load()}")
                result = fanout.run_one("vidsync", run_args, workdir, server_args)
                if result.error:
                    raise RuntimeError(result.error)
                lat = result.loadgen["latency_ms"]
                p99[label].append(lat["p99"])
                print(f"fan-out {label:<15} p50 {lat['p50']:7.1f} ms  p99 {lat['p99']:7.1f} ms  "
                      f"deliveries {result.loadgen['deliveries']}/"
                      f"{result.loadgen['expected_deliveries']}  ({load()})", flush=True)
        base, during = min(p99["not collecting"]), min(p99["collecting"])
        print(f"fan-out p99, best of {args.repeat}: {during:.1f} ms collecting vs {base:.1f} ms "
              f"not: {during / base:.2f}x")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
