"""An image sequence through the server: many small files each way, beside rsync in the same run.

    .venv/bin/python bench/agents/small_files.py [--files 20000] [--size 2048] [--dir /mnt/x]

1. share: ``vidsync share DIR`` starts on a folder of ``--files`` frames of ``--size`` random
   bytes (1000 per sub-folder, as a render writes them); the clock stops when the agent's state
   says every change is posted (the server has stored and checked every frame, and recorded
   it). Beside ``rsync -r`` of the same tree to an ``rsync --daemon`` into an empty destination.
2. join: ``vidsync join --once`` into an empty folder (process wall time: start-up, snapshot,
   the frames fetched in batches, each checked against its SHA-256, fsynced, renamed into
   place); every file is then compared with the source. Beside rsync of the same tree again
   into an empty destination.

The rsync daemon and the load printout are throughput.py's, so both benchmarks measure alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness import VIDSYNC, Proc, account, env_for, machine, save, start_server
from throughput import RsyncDaemon, load

from vidsync.agent.share.status import share_status
from vidsync.client import Client

TIMEOUT_S = 900


def write_frames(root: Path, count: int, size: int) -> None:
    for i in range(count):
        folder = root / f"sh010/comp_{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"sh010_comp.{i:07d}.exr").write_bytes(os.urandom(size))


def same_tree(a: Path, b: Path) -> bool:
    def files(root: Path) -> list[Path]:
        return sorted(p.relative_to(root) for p in root.rglob("*")
                      if p.is_file() and ".vidsync" not in p.parts)

    files_a, files_b = files(a), files(b)
    return files_a == files_b and all((a / p).read_bytes() == (b / p).read_bytes()
                                      for p in files_a)


async def invite(url: str, token: str, project_id: str) -> str:
    async with Client(url, token) as c:
        return (await c.create_invite(project_id))["code"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--dir", help="where the scratch folders go (default: the temp dir)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="vidsync-bench-", dir=args.dir))
    server = start_server(scratch / "server")
    rsyncd = RsyncDaemon(scratch)
    sharer: Proc | None = None
    rows: list[tuple[str, float, float, float]] = []
    try:
        owner = asyncio.run(account(server.url, "owner"))
        viewer = asyncio.run(account(server.url, "viewer"))
        src, mirror = scratch / "frames", scratch / "mirror"
        print(f"writing {args.files} files of {args.size} bytes ...")
        write_frames(src, args.files, args.size)
        subprocess.run(["sync"], check=True)

        # 1. share until every frame is posted
        (scratch / "owner").mkdir()
        t = time.perf_counter()
        sharer = Proc(["share", str(src)], env_for(server.url, owner, scratch / "owner"),
                      scratch / "share.log")
        deadline = time.monotonic() + TIMEOUT_S
        while (share_status(src) or {}).get("changes_posted", 0) < args.files:
            if time.monotonic() > deadline or sharer.proc.poll() is not None:
                raise SystemExit(f"the share agent did not post every file:\n{sharer.log[-2000:]}")
            time.sleep(0.05)
        share_s = time.perf_counter() - t
        project_id = share_status(src)["project_id"]
        rsync_up_s, _ = rsyncd.send(src, "-r")
        rows.append(("vidsync share until all are posted", share_s, rsync_up_s, load()))

        # 2. join --once into an empty folder
        code = asyncio.run(invite(server.url, owner, project_id))
        (scratch / "viewer").mkdir()
        t = time.perf_counter()
        subprocess.run([*VIDSYNC, "join", "--once", code, str(mirror)],
                       env=env_for(server.url, viewer, scratch / "viewer"), check=True,
                       timeout=TIMEOUT_S, stdout=subprocess.DEVNULL)
        join_s = time.perf_counter() - t
        shutil.rmtree(rsyncd.dest / src.name)
        rsync_down_s, _ = rsyncd.send(src, "-r")
        rows.append(("vidsync join --once into an empty folder", join_s, rsync_down_s, load()))
        if not same_tree(src, mirror):
            raise SystemExit("the mirror differs from the source")

        results = {"machine": machine(), "files": args.files, "size": args.size,
                   "steps": [{"step": n, "vidsync_s": a, "rsync_s": b, "load_1m": lo}
                             for n, a, b, lo in rows]}
        print(f"\n{args.files} files of {args.size} bytes, {os.cpu_count()} cores")
        print(f"{'step':42} {'vidsync':>18} {'rsync':>18} {'ratio':>6} {'load':>5}")
        for name, ours, ref, lo in rows:
            print(f"{name:42} {ours:6.2f} s {args.files / ours:6.0f} f/s "
                  f"{ref:6.2f} s {args.files / ref:6.0f} f/s {ours / ref:5.1f}x {lo:5.1f}")
        print(f"results: {save('agents-small-files', results)}")
    finally:
        if sharer is not None:
            sharer.stop()
        rsyncd.stop()
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
