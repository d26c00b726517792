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
3. delete: the owner deletes every frame (1,000 changes per post), then ``vidsync join --once``
   on the mirror until they are gone (and their emptied folders). Beside ``rsync -r --delete``
   of an emptied folder onto the destination holding the tree.

rsync runs twice per step, as it comes and with ``--fsync`` (every file on disk when it ends, as
ours are). ``throughput.py`` runs the same steps (``measure_small_files``) after its big-file
steps, so one run prints both shapes of a video project beside rsync.
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

from harness import (
    RsyncDaemon,
    account,
    agent,
    env_for,
    invite,
    load,
    machine,
    save,
    start_server,
    steps_json,
)

from vidsync.agent.share.status import share_status
from vidsync.client import Client
from vidsync.testing import VIDSYNC, AgentProcess, ServerProcess

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


# (step, ours s, rsync s, rsync --fsync s, load)
Row = tuple[str, float, float, float, float]


def measure_small_files(scratch: Path, server: ServerProcess, rsyncd: RsyncDaemon, files: int,
                        size: int) -> list[Row]:
    """Steps 1 to 3 (see the module's docstring) in ``scratch``, beside ``rsyncd``."""
    sharer: AgentProcess | None = None
    rows: list[Row] = []
    try:
        owner = asyncio.run(account(server.url, "owner"))
        viewer = asyncio.run(account(server.url, "viewer"))
        src, mirror = scratch / "frames", scratch / "frames-mirror"
        print(f"writing {files} files of {size} bytes ...")
        write_frames(src, files, size)
        subprocess.run(["sync"], check=True)

        # 1. share until every frame is posted
        (scratch / "frames-owner").mkdir()
        t = time.perf_counter()
        sharer = agent(["share", str(src)], env_for(server.url, owner, scratch / "frames-owner"),
                       scratch / "share.log")
        deadline = time.monotonic() + TIMEOUT_S
        while (share_status(src) or {}).get("changes_posted", 0) < files:
            if time.monotonic() > deadline or sharer.proc.poll() is not None:
                raise SystemExit(f"the share agent did not post every file:\n{sharer.log[-2000:]}")
            time.sleep(0.05)
        share_s = time.perf_counter() - t
        project_id = share_status(src)["project_id"]
        sharer.stop()
        rows.append(("small files: vidsync share until all posted", share_s,
                     *rsyncd.send_both(src, "-r")[:2], load()))

        # 2. join --once into an empty folder
        code = asyncio.run(invite(server.url, owner, project_id))
        (scratch / "frames-viewer").mkdir()
        t = time.perf_counter()
        subprocess.run([*VIDSYNC, "join", "--once", code, str(mirror)],
                       env=env_for(server.url, viewer, scratch / "frames-viewer"), check=True,
                       timeout=TIMEOUT_S, stdout=subprocess.DEVNULL)
        join_s = time.perf_counter() - t
        rows.append(("small files: vidsync join --once", join_s,
                     *rsyncd.send_both(src, "-r")[:2], load()))
        if not same_tree(src, mirror):
            raise SystemExit("the mirror differs from the source")

        # 3. the owner deletes the sequence; the mirror catches up
        names = sorted(str(p.relative_to(src)) for p in src.rglob("*")
                       if p.is_file() and ".vidsync" not in p.relative_to(src).parts)
        asyncio.run(delete_all(server.url, owner, project_id, names))
        t = time.perf_counter()
        subprocess.run([*VIDSYNC, "join", "--once", str(mirror)],
                       env=env_for(server.url, viewer, scratch / "frames-viewer"), check=True,
                       timeout=TIMEOUT_S, stdout=subprocess.DEVNULL)
        delete_s = time.perf_counter() - t
        if any(p.is_file() for p in mirror.rglob("*") if ".vidsync" not in p.parts):
            raise SystemExit("the mirror still holds deleted frames")
        gone = scratch / "frames-gone" / src.name
        gone.mkdir(parents=True)
        deletes = []
        for extra in ((), ("--fsync",)):
            rsyncd.clear(src.name)
            rsyncd.send(src, "-r")  # the tree in place again (not timed)
            deletes.append(rsyncd.send(gone, "-r", "--delete", *extra)[0])
        rows.append(("small files: deleted -> gone from the mirror", delete_s, *deletes, load()))
    finally:
        if sharer is not None:
            sharer.stop()
    return rows


async def delete_all(url: str, token: str, project_id: str, paths: list[str]) -> None:
    """The owner deletes these files, 1,000 changes per post."""
    async with Client(url, token) as c:
        for i in range(0, len(paths), 1000):
            await c.post_changes(project_id, [{"path": p, "op": "delete"}
                                              for p in paths[i:i + 1000]])


def print_rows(rows: list[Row], files: int) -> None:
    print(f"{'step':44} {'vidsync':>18} {'rsync':>18} {'ratio':>6} {'rsync --fsync':>18} "
          f"{'ratio':>6} {'load':>5}")
    for name, ours, ref, ref_fsync, lo in rows:
        print(f"{name:44} {ours:6.2f} s {files / ours:6.0f} f/s {ref:6.2f} s "
              f"{files / ref:6.0f} f/s {ours / ref:5.1f}x {ref_fsync:6.2f} s "
              f"{files / ref_fsync:6.0f} f/s {ours / ref_fsync:5.1f}x {lo:5.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--dir", help="where the scratch folders go (default: the temp dir)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="vidsync-bench-", dir=args.dir))
    server = start_server(scratch / "server")
    rsyncd = RsyncDaemon(scratch)
    try:
        rows = measure_small_files(scratch, server, rsyncd, args.files, args.size)
        results = {"machine": machine(), "files": args.files, "size": args.size,
                   "steps": steps_json(rows)}
        print(f"\n{args.files} files of {args.size} bytes, {os.cpu_count()} cores")
        print_rows(rows, args.files)
        print(f"results: {save('agents-small-files', results)}")
    finally:
        rsyncd.stop()
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
