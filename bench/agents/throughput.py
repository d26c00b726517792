"""One big file through the server on loopback, beside rsync in the same run; a small edit inside it.

    .venv/bin/python bench/agents/throughput.py [--size-mib 1024] [--edit-mib 1] [--repeat 3]
                                                [--small-files 20000] [--dir /mnt/xfs]

Each step of ours is followed at once by the same step with rsync (to an ``rsync --daemon`` on
127.0.0.1), so both see the same machine load; the 1-minute load average is printed per step.
rsync runs twice per step: as it comes (its receiver leaves the file in the page cache, not yet
on disk) and with ``--fsync`` (the file on disk when it ends, as ours is: the mirror fsyncs
before the rename, the server before it accepts a manifest). Steps 1 and 2 are repeated
``--repeat`` times (a new project each time) and their medians printed: on a VM a single write
of a GiB can vary twofold from one run to the next. With ``--drop-caches`` (as root) dirty pages
are written back and the page cache dropped before every step, ours and rsync's (see
``harness.drop_caches``: on a VM, growing the page cache into memory the guest has not used
lately costs several times what reusing just-freed memory does, so without it the order of the
steps decides much of the result); inputs are then read from disk, by both.

1. upload: the owner's SDK ``upload_file`` (hashing included) of a random file, then its post;
   beside ``rsync --whole-file`` of the same file into an empty destination.
2. download: ``vidsync join --once`` into an empty folder (process wall time: start-up,
   snapshot, download with the SHA-256 check, fsync, rename); beside rsync of the same file.
3. owner's write -> collaborator verified: a following ``vidsync join`` agent is running; a new
   random file of the same size is uploaded and posted by the owner (hashing included), and the
   clock stops when the file appears in the mirror (it is renamed into place only once its
   SHA-256 matched). The mirror fetches while the owner uploads (``project:upload``). Beside
   rsync of that file.
4. ``--edit-mib`` in the middle of the first file is overwritten: the owner hashes the file,
   uploads the changed blocks and posts (the share agent's work once the file settled); then
   post -> the new version verified in the mirror, with the bytes the join agent wrote to disk
   (``/proc/PID/io`` ``write_bytes``: reflinked blocks cost none, ``copy_file_range`` on ext4
   writes them all). Beside rsync's delta transfer of the same edit.
5. The owner's side of ``--repeat`` more edits with the file in the page cache (as an editing
   app leaves it; on this VM idle page cache is reclaimed within minutes, so step 4 may read
   the file from disk), split into hashing from the saved SHA-256 states (beside the same file
   hashed whole, without them) and upload + post (the server hashes from its saved states).

``--dir`` puts the scratch folders (server, mirror, rsync destination) on another filesystem,
e.g. a loop-mounted XFS or btrfs to see reflinks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from harness import (
    RsyncDaemon,
    account,
    agent,
    drop_caches,
    env_for,
    load,
    machine,
    save,
    start_server,
    steps_json,
    wait_connected,
)
from small_files import measure_small_files, print_rows

from vidsync.client import Checkpoints, Client, hash_file
from vidsync.testing import VIDSYNC, AgentProcess

MiB = 1024 * 1024
JOIN_TIMEOUT_S = 1800


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
        f.write(os.urandom(size % (16 * MiB)))


def overwrite(path: Path, offset: int, n: int) -> None:
    """Random bytes over ``n`` bytes of the file at ``offset``: an edit in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(n))


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# The hash states of each file's last version, as the share agent keeps them: an edit is hashed
# from the last state before its first changed block.
STATES: dict[Path, Checkpoints | None] = {}


async def publish(url: str, token: str, project_id: str, path: Path, name: str,
                  op: str) -> tuple[float, int, float]:
    """Hash, upload and post: (seconds, bytes uploaded, perf_counter when the post was answered)."""
    async with Client(url, token) as c:
        t = time.perf_counter()
        manifest, STATES[path] = await asyncio.to_thread(hash_file, path, None, STATES.get(path))
        up = await c.upload_file(project_id, path, manifest=manifest, path=name)
        await c.post_changes(project_id, [{"path": name, "op": op, "hash": up.hash, "size": up.size,
                                           "mtime": int(time.time() * 1000)}])
        return time.perf_counter() - t, up.uploaded_bytes, time.perf_counter()


async def warm_edits(url: str, token: str, project_id: str, path: Path, edit_mib: int,
                     rounds: int) -> dict[str, float]:
    """The owner's side of an edit with the file in the page cache (just written, as an editing
    app leaves it), split into hashing (from the saved states, and beside it the whole file
    without them, the same bytes) and upload + post: medians of ``rounds`` edits at random
    places in the second half."""
    times: list[tuple[float, float, float]] = []
    async with Client(url, token) as c:
        for _ in range(rounds):
            size = path.stat().st_size  # noqa: ASYNC240 - a bench, nothing else runs
            where = size // 2 + int.from_bytes(os.urandom(4), "big") % (size // 2 - edit_mib * MiB)
            await asyncio.to_thread(overwrite, path, where, edit_mib * MiB)
            await asyncio.to_thread(sha256, path)  # the whole file in the page cache
            t = time.perf_counter()
            whole = await asyncio.to_thread(hash_file, path)
            hash_whole_s = time.perf_counter() - t
            t = time.perf_counter()
            manifest, STATES[path] = await asyncio.to_thread(hash_file, path, None, STATES.get(path))
            hash_s = time.perf_counter() - t
            assert manifest == whole[0]
            t = time.perf_counter()
            up = await c.upload_file(project_id, path, manifest=manifest, path="big.mov")
            await c.post_changes(project_id, [{"path": "big.mov", "op": "update", "hash": up.hash,
                                               "size": up.size, "mtime": int(time.time() * 1000)}])
            times.append((hash_s, hash_whole_s, time.perf_counter() - t))
    hash_s, hash_whole_s, upload_post_s = _medians(times)
    return {"hash_s": hash_s, "hash_whole_s": hash_whole_s, "upload_post_s": upload_post_s}


def _medians(rounds: list[tuple[float, ...]]) -> tuple[float, ...]:
    return tuple(statistics.median(column) for column in zip(*rounds, strict=True))


def written_bytes(pid: int) -> int:
    """Bytes the process has caused to be written to storage so far."""
    text = Path(f"/proc/{pid}/io").read_text()
    return int(re.search(r"^write_bytes: (\d+)", text, re.M).group(1))


async def new_project(url: str, token: str) -> tuple[str, str]:
    async with Client(url, token) as c:
        project_id = (await c.create_project("throughput"))["id"]
        return project_id, (await c.create_invite(project_id))["code"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--edit-mib", type=int, default=1)
    parser.add_argument("--dir", help="where the scratch folders go (default: the temp dir)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of steps 1 and 2")
    parser.add_argument("--small-files", type=int, default=20_000,
                        help="then an image sequence of this many files each way "
                             "(small_files.py's steps; 0: skip)")
    parser.add_argument("--small-size", type=int, default=2048)
    parser.add_argument("--drop-caches", action="store_true",
                        help="drop the page cache before every big-file step (root only)")
    args = parser.parse_args()
    size = args.size_mib * MiB

    scratch = Path(tempfile.mkdtemp(prefix="vidsync-bench-", dir=args.dir))
    server = start_server(scratch / "server")
    rsyncd = RsyncDaemon(scratch)
    follower: AgentProcess | None = None
    # (step, ours s, rsync s, rsync --fsync s, load)
    rows: list[tuple[str, float, float, float, float]] = []
    try:
        owner = asyncio.run(account(server.url, "owner"))
        viewer = asyncio.run(account(server.url, "viewer"))
        (scratch / "viewer").mkdir()
        viewer_env = env_for(server.url, viewer, scratch / "viewer")
        src, mirror = scratch / "big.mov", scratch / "mirror"
        print(f"writing {args.size_mib} MiB of random data ...")
        write_random(src, size)
        digest = sha256(src)

        def fresh() -> None:
            if args.drop_caches and not drop_caches():
                raise SystemExit("--drop-caches needs root")

        def join_once(*where: str) -> float:
            t = time.perf_counter()
            subprocess.run([*VIDSYNC, "join", "--once", *where], env=viewer_env, check=True,
                           timeout=JOIN_TIMEOUT_S, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t

        # 1. upload and 2. download, --repeat rounds (a new project each), medians
        ups, downs = [], []
        for round_ in range(args.repeat):
            pid, invite = asyncio.run(new_project(server.url, owner))
            if round_ == 0:
                project_id = pid
            fresh()
            up_s, up_bytes, _ = asyncio.run(publish(server.url, owner, pid, src, "big.mov",
                                                    "create"))
            ups.append((up_s, *rsyncd.send_both(src, "--whole-file", fresh=args.drop_caches)[:2], load()))
            where = mirror if round_ == 0 else scratch / f"mirror{round_}"
            fresh()
            join_s = join_once(invite, str(where))
            assert sha256(where / "big.mov") == digest
            if round_:
                shutil.rmtree(where)
            down = rsyncd.send_both(src, "--whole-file", fresh=args.drop_caches)
            downs.append((join_s, *down[:2], load()))
            print(f"round {round_ + 1}: upload {up_s:.2f} s, rsync {ups[-1][1]:.2f} / "
                  f"{ups[-1][2]:.2f} s; join --once {join_s:.2f} s, rsync {down[0]:.2f} / "
                  f"{down[1]:.2f} s")
        assert sha256(rsyncd.dest / "big.mov") == digest
        rsync_bytes = down[2]
        rows.append(("owner upload (hash, upload, post)", *_medians(ups)))
        rows.append(("vidsync join --once (download)", *_medians(downs)))
        idle_s = join_once(str(mirror))  # nothing to do: start-up, catch-up, local scan

        # 3. owner's write -> collaborator verified, with a following join agent
        follower = agent(["join", str(mirror)], viewer_env, scratch / "join.log")
        wait_connected(mirror)
        take2 = scratch / "take2.mov"
        write_random(take2, size)
        digest2 = sha256(take2)
        fresh()
        t0 = time.perf_counter()
        pipe_owner_s, _, _ = asyncio.run(publish(server.url, owner, project_id, take2,
                                                 "take2.mov", "create"))
        while not (mirror / "take2.mov").exists():
            time.sleep(0.005)
        pipe_s = time.perf_counter() - t0
        assert sha256(mirror / "take2.mov") == digest2
        rsync_pipe_s, rsync_pipe_fsync_s, _ = rsyncd.send_both(take2, "--whole-file", fresh=args.drop_caches)
        rows.append(("owner's write -> collaborator verified", pipe_s, rsync_pipe_s,
                     rsync_pipe_fsync_s, load()))

        # 4. the edit
        overwrite(src, size // 2 + 12345, args.edit_mib * MiB)
        new_digest = sha256(src)
        before = (mirror / "big.mov").stat().st_ino
        io_before = written_bytes(follower.proc.pid)
        fresh()
        edit_up_s, edit_up_bytes, posted = asyncio.run(publish(server.url, owner, project_id, src,
                                                               "big.mov", "update"))
        while (mirror / "big.mov").stat().st_ino == before:
            time.sleep(0.005)
        edit_s = time.perf_counter() - posted
        edit_written = written_bytes(follower.proc.pid) - io_before
        assert sha256(mirror / "big.mov") == new_digest
        fetched = re.search(r"updated\s+big\.mov.*fetched ([\d.]+ \w+)", follower.log)
        # rsync's delta run against the previous version, as it comes and with --fsync
        shutil.copyfile(rsyncd.dest / "big.mov", scratch / "big.prev")
        edit_rsync_s, edit_rsync_bytes = rsyncd.send(src, fresh=args.drop_caches)
        assert sha256(rsyncd.dest / "big.mov") == new_digest
        shutil.copyfile(scratch / "big.prev", rsyncd.dest / "big.mov")
        (scratch / "big.prev").unlink()
        edit_rsync_fsync_s, _ = rsyncd.send(src, "--fsync", fresh=args.drop_caches)
        rows.append((f"{args.edit_mib} MiB edit: owner hash+upload+post", edit_up_s, edit_rsync_s,
                     edit_rsync_fsync_s, load()))
        rows.append((f"{args.edit_mib} MiB edit: post -> verified in the mirror", edit_s,
                     edit_rsync_s, edit_rsync_fsync_s, load()))
        follower.stop()  # the mirror's copy of each edit would share the 2 cores with the owner
        warm = asyncio.run(warm_edits(server.url, owner, project_id, src, args.edit_mib,
                                      args.repeat))

        def rate(seconds: float) -> float:
            return size / MiB / seconds

        fs = subprocess.run(["stat", "-f", "-c", "%T", str(scratch)], capture_output=True,
                            text=True).stdout.strip()
        results = {
            "machine": machine(), "filesystem": fs, "size_mib": args.size_mib,
            "edit_mib": args.edit_mib,
            "repeat": args.repeat, "drop_caches": args.drop_caches,
            "steps": steps_json(rows),
            "upload_bytes": up_bytes, "rsync_bytes": rsync_bytes, "join_idle_run_s": idle_s,
            "pipelined_owner_s": pipe_owner_s,
            "edit": {"owner_upload_bytes": edit_up_bytes, "mirror_written_bytes": edit_written,
                     "join_fetched": fetched.group(1) if fetched else None,
                     "rsync_bytes": edit_rsync_bytes},
        }
        print(f"\n{args.size_mib} MiB file on {fs}, {os.cpu_count()} cores, page cache dropped "
              f"before each step: {'yes' if args.drop_caches else 'no'}")
        print(f"{'step':44} {'vidsync':>16} {'rsync':>16} {'ratio':>6} "
              f"{'rsync --fsync':>16} {'ratio':>6} {'load':>5}")
        for name, ours, ref, ref_fsync, lo in rows:
            print(f"{name:44} {ours:6.2f} s {rate(ours):5.0f} M/s {ref:6.2f} s {rate(ref):5.0f} M/s "
                  f"{ours / ref:5.2f}x {ref_fsync:6.2f} s {rate(ref_fsync):5.0f} M/s "
                  f"{ours / ref_fsync:5.2f}x {lo:5.1f}")
        print(f"(the owner's part of step 3: {pipe_owner_s:.2f} s; a join --once with nothing to "
              f"fetch: {idle_s:.2f} s)")
        print(f"{args.edit_mib} MiB edit, the file in the page cache (medians of {args.repeat}): "
              f"hash from the saved states {warm['hash_s']:.2f} s (the whole file without them: "
              f"{warm['hash_whole_s']:.2f} s), upload + post {warm['upload_post_s']:.2f} s")
        results["edit"]["warm"] = warm
        print(f"{args.edit_mib} MiB edit: owner uploads {edit_up_bytes / MiB:.1f} MiB, the mirror "
              f"fetches {results['edit']['join_fetched']} and writes {edit_written / MiB:.1f} MiB "
              f"to disk; rsync delta: {edit_rsync_bytes / MiB:.2f} MiB on the wire")
        if args.small_files:
            small = measure_small_files(scratch, server, rsyncd, args.small_files,
                                        args.small_size)
            results["small_files"] = {
                "files": args.small_files, "size": args.small_size,
                "steps": steps_json(small)}
            print(f"\n{args.small_files} files of {args.small_size} bytes, same server, same run")
            print_rows(small, args.small_files)
        print(f"results: {save('agents-throughput', results)}")
    finally:
        if follower is not None:
            follower.stop()
        rsyncd.stop()
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
