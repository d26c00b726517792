"""What the agents' benchmarks share: a scratch server, accounts, the agents as processes, and
the rsync daemon they are compared with.

Everything runs on 127.0.0.1 in a scratch directory that is removed at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from vidsync.agent.mirror.status import mirror_status
from vidsync.agent.share import share_status
from vidsync.client import Client
from vidsync.testing import AgentProcess, Process, ServerProcess, free_port

RESULTS = Path(__file__).resolve().parent.parent / "results"


def load() -> float:
    """The 1-minute load average, printed beside every step."""
    return round(os.getloadavg()[0], 1)


def steps_json(rows: list[tuple[str, float, float, float, float]]) -> list[dict]:
    """Rows of (step, ours s, rsync s, rsync --fsync s, load) as the results files hold them."""
    return [{"step": n, "vidsync_s": a, "rsync_s": b, "rsync_fsync_s": c, "load_1m": lo}
            for n, a, b, c, lo in rows]


def drop_caches() -> bool:
    """Write dirty pages back and drop the clean page cache (root only; False where not allowed).

    Why: on this project's VM (a Firecracker guest) a page the guest has not used lately (never
    since boot, or freed and handed back to the host) costs a host fault the first time it is
    written. Growing the page cache by a GiB of new file data took 1.8 to 2.9 s of system CPU that
    way, and 0.23 to 0.28 s right after a drop, when the pages just freed are used again at once.
    Without a drop the step that happens to grow the cache pays several times what the step that
    follows a deletion pays, and a comparison measures the order of the steps, not the programs.
    The cost: the step's input is then read from disk, for ours and rsync's alike."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


class RsyncDaemon:
    """``rsync --daemon`` on 127.0.0.1, the reference every transfer step is run beside."""

    def __init__(self, scratch: Path) -> None:
        if shutil.which("rsync") is None:
            raise SystemExit("rsync is missing: apt-get install -y rsync")
        self.dest = scratch / "rsync-dest"
        self.dest.mkdir()
        conf = scratch / "rsyncd.conf"
        conf.write_text(f"use chroot = no\n[bench]\npath = {self.dest}\nread only = no\n"
                        f"uid = {os.getuid()}\ngid = {os.getgid()}\n")
        self.port = free_port()
        # Ready once it accepts connections on its port.
        self.daemon = Process(["rsync", "--daemon", "--no-detach", f"--port={self.port}",
                               f"--config={conf}", "--address=127.0.0.1"], self.port,
                              log_path=scratch / "rsyncd.log").start()

    def send(self, path: Path, *options: str, fresh: bool = False) -> tuple[float, int]:
        """(seconds, bytes sent + received on the wire); ``fresh``: ``drop_caches`` first."""
        if fresh:
            drop_caches()
        t = time.perf_counter()
        out = subprocess.run(["rsync", "--stats", *options, str(path),
                              f"rsync://127.0.0.1:{self.port}/bench/"],
                             capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - t

        def total(what: str) -> int:
            return int(re.sub(r"\D", "", re.search(rf"Total bytes {what}: ([\d,.]+)", out.stdout).group(1)))

        return seconds, total("sent") + total("received")

    def send_both(self, path: Path, *options: str, fresh: bool = False
                  ) -> tuple[float, float, int]:
        """rsync of ``path`` into an empty destination as it comes, then again with ``--fsync``
        (the files on disk when it ends, as ours are): (seconds, seconds with --fsync, bytes on
        the wire)."""
        self.clear(path.name)
        plain_s, wire = self.send(path, *options, fresh=fresh)
        self.clear(path.name)
        fsync_s, _ = self.send(path, "--fsync", *options, fresh=fresh)
        return plain_s, fsync_s, wire

    def clear(self, name: str) -> None:
        target = self.dest / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)

    def stop(self) -> None:
        self.daemon.stop()


def start_server(data_dir: Path) -> ServerProcess:
    """``vidsync serve`` on a free port, warnings only (``quiet``), its log in ``data_dir``."""
    return ServerProcess(data_dir, quiet=True).start()


async def account(url: str, name: str) -> str:
    """A new user's token."""
    async with Client(url) as c:
        out = await c.register(f"{name}-{uuid.uuid4().hex[:8]}@example.com", "correct horse 1", name)
        return out["token"]


async def invite(url: str, token: str, project_id: str, role: str = "viewer") -> str:
    """A new invite code to the project, for ``role``."""
    async with Client(url, token) as c:
        return (await c.create_invite(project_id, role=role))["code"]


def env_for(url: str, token: str, home: Path) -> dict[str, str]:
    return {**os.environ, "VIDSYNC_SERVER": url, "VIDSYNC_TOKEN": token,
            "VIDSYNC_CONFIG_DIR": str(home / "config"), "VIDSYNC_LOG_LEVEL": "warning"}


def agent(args: list[str], env: dict[str, str], log: Path) -> AgentProcess:
    """A ``vidsync`` agent started in the background, its output in ``log``."""
    return AgentProcess(args, env=env, log_path=log).start()


def share_folder(folder: Path, url: str, token: str, home: Path, log: Path,
                 args: list[str] | None = None, timeout: float = 60) -> tuple[AgentProcess, str]:
    """``vidsync share folder`` started in the background, once it has made its project:
    (the agent, the project id)."""
    home.mkdir(exist_ok=True)
    sharer = agent(["share", str(folder), *(args or [])], env_for(url, token, home), log)
    deadline = time.monotonic() + timeout
    while not (status := share_status(folder) or {}).get("project_id"):
        if time.monotonic() > deadline:
            raise SystemExit(f"vidsync share did not create its project:\n{sharer.log}")
        time.sleep(0.1)
    return sharer, status["project_id"]


def wait_connected(mirror: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = mirror_status(mirror) if (mirror / ".vidsync/mirror.db").exists() else {}
        except Exception:  # the database is being created
            status = {}
        if status.get("connection") in ("websocket", "polling") and not status["pending_downloads"]:
            return
        time.sleep(0.1)
    raise SystemExit(f"the join agent for {mirror} did not connect")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def machine() -> dict:
    return {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
