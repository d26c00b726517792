"""What the agents' benchmarks share: a scratch server, accounts, and the agents as processes.

Everything runs on 127.0.0.1 in a scratch directory that is removed at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from vidsync.agent.mirror.status import mirror_status
from vidsync.client import Client

VIDSYNC = [sys.executable, "-m", "vidsync"]
RESULTS = Path(__file__).resolve().parent.parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([*VIDSYNC, "serve", "--port", str(self.port), "--data-dir",
                                      str(data_dir), "--log-level", "warning"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        raise SystemExit("the server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


async def account(url: str, name: str) -> str:
    """A new user's token."""
    async with Client(url) as c:
        out = await c.register(f"{name}-{uuid.uuid4().hex[:8]}@example.com", "correct horse 1", name)
        return out["token"]


def env_for(url: str, token: str, home: Path) -> dict[str, str]:
    return {**os.environ, "VIDSYNC_SERVER": url, "VIDSYNC_TOKEN": token,
            "VIDSYNC_CONFIG_DIR": str(home / "config"), "VIDSYNC_LOG_LEVEL": "warning"}


class Proc:
    """A ``vidsync`` subcommand running in the background, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen([*VIDSYNC, *args], env=env, stdout=f, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


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
