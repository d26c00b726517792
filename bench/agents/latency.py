"""End-to-end latency: a small file written in the owner's folder until it is in the mirror.

    .venv/bin/python bench/agents/latency.py [--samples 100] [--settle 0.25] [--debounce 0.5]

Starts a scratch server, ``vidsync share`` on a folder and ``vidsync join`` on another, then writes
one small file at a time in the shared folder and times it until the mirror holds the same bytes
(the join agent renames a file into place only after checking its SHA-256, so arrival is
verified arrival). A second series posts each file through the SDK instead of the share agent,
which isolates the server and the join agent from the owner's debounce and settle delays.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from harness import (
    account,
    agent,
    env_for,
    invite,
    machine,
    percentile,
    save,
    share_folder,
    start_server,
    wait_connected,
)

from vidsync.client import Client
from vidsync.testing import AgentProcess

POLL_S = 0.002


def wait_for(path: Path, data: bytes, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if path.read_bytes() == data:
                return time.perf_counter()
        except FileNotFoundError:
            pass
        time.sleep(POLL_S)
    raise SystemExit(f"{path} did not arrive in {timeout} s")


def summary(name: str, samples: list[float]) -> dict:
    ms = [s * 1000 for s in samples]
    out = {"samples": len(ms), "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
           "p99_ms": percentile(ms, 99), "max_ms": max(ms)}
    print(f"{name:<44} p50 {out['p50_ms']:7.1f} ms   p90 {out['p90_ms']:7.1f} ms   "
          f"p99 {out['p99_ms']:7.1f} ms   max {out['max_ms']:7.1f} ms   (n={len(ms)})")
    return out


async def post_series(url: str, token: str, project_id: str, mirror: Path, n: int) -> list[float]:
    """Owner posts through the SDK (upload, then the change); time until the mirror has it."""
    out = []
    async with Client(url, token) as c:
        for i in range(n):
            data = f"sdk sample {i} {random.random()}\n".encode()
            local = mirror.parent / "sdk-sample"
            local.write_bytes(data)
            t0 = time.perf_counter()
            up = await c.upload_file(project_id, local)
            await c.post_changes(project_id, [{"path": f"sdk/{i}.txt", "op": "create",
                                               "hash": up.hash, "size": up.size, "mtime": 0}])
            out.append(await asyncio.to_thread(wait_for, mirror / "sdk" / f"{i}.txt", data) - t0)
            await asyncio.sleep(random.uniform(0.05, 0.15))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--debounce", type=float, default=0.5, help="vidsync share --debounce")
    parser.add_argument("--settle", type=float, default=0.25, help="vidsync share --settle")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="vidsync-bench-"))
    server = start_server(scratch / "server")
    procs: list[AgentProcess] = []
    try:
        owner = asyncio.run(account(server.url, "owner"))
        viewer = asyncio.run(account(server.url, "viewer"))
        src, mirror = scratch / "src", scratch / "mirror"
        src.mkdir()
        (scratch / "viewer").mkdir()
        sharer, project_id = share_folder(
            src, server.url, owner, scratch / "owner", scratch / "share.log",
            ["--debounce", str(args.debounce), "--settle", str(args.settle)])
        procs.append(sharer)
        code = asyncio.run(invite(server.url, owner, project_id))
        procs.append(agent(["join", code, str(mirror)],
                           env_for(server.url, viewer, scratch / "viewer"), scratch / "join.log"))
        wait_connected(mirror)

        e2e = []
        for i in range(args.samples):
            data = f"sample {i} {random.random()}\n".encode()
            t0 = time.perf_counter()
            (src / f"{i}.txt").write_bytes(data)
            e2e.append(wait_for(mirror / f"{i}.txt", data) - t0)
            time.sleep(random.uniform(0.05, 0.15))
        via_sdk = asyncio.run(post_series(server.url, owner, project_id, mirror, args.samples))

        print(f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        results = {
            "machine": machine(), "debounce_s": args.debounce, "settle_s": args.settle,
            "share_to_mirror": summary(f"write -> mirror (debounce {args.debounce}, settle "
                                       f"{args.settle})", e2e),
            "post_to_mirror": summary("SDK upload+post -> mirror (server + join)", via_sdk),
        }
        print(f"results: {save('agents-latency', results)}")
    finally:
        for p in procs:
            p.stop()
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
