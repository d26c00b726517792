"""One big file through the server on loopback, beside rsync; then a small edit inside it.

    .venv/bin/python bench/agents/throughput.py [--size-mib 1024] [--edit-mib 1]

1. A random file of ``--size-mib`` is uploaded by the owner (SDK ``upload_file``, as the share
   agent does) and mirrored by ``vidsync join --once`` into an empty folder: the join time is the
   process's wall time (start-up, snapshot, download, SHA-256 check, fsync, rename).
2. The same file is sent by ``rsync`` to an ``rsync --daemon`` on 127.0.0.1 (an empty destination,
   so the whole file goes over the socket), in the same run.
3. ``--edit-mib`` in the middle of the file is overwritten; the owner uploads the new version (only
   the changed blocks travel) and a following join agent applies it (fetching only what it lacks,
   reusing the rest from its old copy). The same edit is then sent with rsync's delta transfer.
   Bytes are what each side reports: the SDK's uploaded bytes, the join agent's fetched bytes,
   rsync's ``--stats`` totals.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness import VIDSYNC, Proc, Server, account, env_for, free_port, machine, save, wait_connected

from vidsync.client import Client

MiB = 1024 * 1024
JOIN_TIMEOUT_S = 1800


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
        f.write(os.urandom(size % (16 * MiB)))


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


async def publish(url: str, token: str, project_id: str, path: Path, name: str,
                  op: str) -> tuple[float, int, float]:
    """Upload and post: (seconds, bytes uploaded, perf_counter when the post was answered)."""
    async with Client(url, token) as c:
        t = time.perf_counter()
        up = await c.upload_file(project_id, path)
        await c.post_changes(project_id, [{"path": name, "op": op, "hash": up.hash, "size": up.size,
                                           "mtime": int(time.time() * 1000)}])
        return time.perf_counter() - t, up.uploaded_bytes, time.perf_counter()


async def new_project(url: str, token: str) -> tuple[str, str]:
    async with Client(url, token) as c:
        project_id = (await c.create_project("throughput"))["id"]
        return project_id, (await c.create_invite(project_id))["code"]


class RsyncDaemon:
    def __init__(self, scratch: Path) -> None:
        if shutil.which("rsync") is None:
            raise SystemExit("rsync is missing: apt-get install -y rsync")
        self.dest = scratch / "rsync-dest"
        self.dest.mkdir()
        conf = scratch / "rsyncd.conf"
        conf.write_text(f"use chroot = no\n[bench]\npath = {self.dest}\nread only = no\n"
                        f"uid = {os.getuid()}\ngid = {os.getgid()}\n")
        self.port = free_port()
        self.proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--port={self.port}",
                                      f"--config={conf}", "--address=127.0.0.1"])
        time.sleep(0.5)

    def send(self, path: Path, *options: str) -> tuple[float, int]:
        """(seconds, bytes sent + received on the wire)."""
        t = time.perf_counter()
        out = subprocess.run(["rsync", "--stats", *options, str(path),
                              f"rsync://127.0.0.1:{self.port}/bench/"],
                             capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - t

        def total(what: str) -> int:
            return int(re.sub(r"\D", "", re.search(rf"Total bytes {what}: ([\d,.]+)", out.stdout).group(1)))

        return seconds, total("sent") + total("received")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--edit-mib", type=int, default=1)
    args = parser.parse_args()
    size = args.size_mib * MiB

    scratch = Path(tempfile.mkdtemp(prefix="vidsync-bench-"))
    server = Server(scratch / "server")
    rsyncd = RsyncDaemon(scratch)
    follower: Proc | None = None
    try:
        owner = asyncio.run(account(server.url, "owner"))
        viewer = asyncio.run(account(server.url, "viewer"))
        (scratch / "viewer").mkdir()
        viewer_env = env_for(server.url, viewer, scratch / "viewer")
        src, mirror = scratch / "big.mov", scratch / "mirror"
        print(f"writing {args.size_mib} MiB of random data ...")
        write_random(src, size)
        digest = sha256(src)
        project_id, code = asyncio.run(new_project(server.url, owner))

        up_s, up_bytes, _ = asyncio.run(publish(server.url, owner, project_id, src, "big.mov", "create"))

        def join_once(*where: str) -> float:
            t = time.perf_counter()
            subprocess.run([*VIDSYNC, "join", "--once", *where], env=viewer_env, check=True,
                           timeout=JOIN_TIMEOUT_S, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t

        join_s = join_once(code, str(mirror))
        assert sha256(mirror / "big.mov") == digest
        idle_s = join_once(str(mirror))  # nothing to do: start-up, catch-up, local scan
        rsync_s, rsync_bytes = rsyncd.send(src, "--whole-file")
        assert sha256(rsyncd.dest / "big.mov") == digest

        # The edit: overwrite edit-mib in the middle of the file.
        follower = Proc(["join", str(mirror)], viewer_env, scratch / "join.log")
        wait_connected(mirror)
        with open(src, "r+b") as f:
            f.seek(size // 2 + 12345)
            f.write(os.urandom(args.edit_mib * MiB))
        new_digest = sha256(src)
        before = (mirror / "big.mov").stat().st_ino
        edit_up_s, edit_up_bytes, posted = asyncio.run(publish(server.url, owner, project_id, src,
                                                               "big.mov", "update"))
        while (mirror / "big.mov").stat().st_ino == before:
            time.sleep(0.005)
        edit_s = time.perf_counter() - posted
        assert sha256(mirror / "big.mov") == new_digest
        fetched = re.search(r"updated\s+big\.mov.*fetched ([\d.]+ \w+)", follower.log)
        edit_rsync_s, edit_rsync_bytes = rsyncd.send(src)
        assert sha256(rsyncd.dest / "big.mov") == new_digest

        def rate(seconds: float) -> float:
            return size / MiB / seconds

        results = {
            "machine": machine(), "size_mib": args.size_mib, "edit_mib": args.edit_mib,
            "upload": {"seconds": up_s, "mib_s": rate(up_s), "bytes": up_bytes},
            "join_once": {"seconds": join_s, "mib_s": rate(join_s), "idle_run_s": idle_s},
            "rsync_daemon": {"seconds": rsync_s, "mib_s": rate(rsync_s), "bytes": rsync_bytes},
            "edit": {"owner_upload_bytes": edit_up_bytes, "owner_upload_s": edit_up_s,
                     "post_answered_to_mirror_s": edit_s,
                     "join_fetched": fetched.group(1) if fetched else None,
                     "rsync_s": edit_rsync_s, "rsync_bytes": edit_rsync_bytes},
        }
        print(f"\n{args.size_mib} MiB file, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print(f"owner upload (SDK)          {up_s:7.2f} s  {rate(up_s):6.0f} MiB/s")
        print(f"vidsync join --once         {join_s:7.2f} s  {rate(join_s):6.0f} MiB/s  (a run with "
              f"nothing to fetch takes {idle_s:.2f} s)")
        print(f"upload + join               {up_s + join_s:7.2f} s  {rate(up_s + join_s):6.0f} MiB/s")
        print(f"rsync --whole-file (daemon) {rsync_s:7.2f} s  {rate(rsync_s):6.0f} MiB/s")
        print(f"{args.edit_mib} MiB edit: owner uploads {edit_up_bytes / MiB:.1f} MiB, mirror fetches "
              f"{results['edit']['join_fetched']}; upload+post {edit_up_s:.2f} s, then post -> "
              f"verified in the mirror {edit_s:.2f} s; rsync delta {edit_rsync_bytes / MiB:.2f} MiB "
              f"on the wire in {edit_rsync_s:.2f} s")
        print(f"results: {save('agents-throughput', results)}")
    finally:
        if follower is not None:
            follower.stop()
        rsyncd.stop()
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
