"""What the agents' benchmarks share: a scratch server, accounts, and the agents as processes.

Everything runs on 127.0.0.1 in a scratch directory that is removed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

from vidsync.agent.mirror.status import mirror_status
from vidsync.client import Client
from vidsync.testing import VIDSYNC, ServerProcess

RESULTS = Path(__file__).resolve().parent.parent / "results"


def start_server(data_dir: Path) -> ServerProcess:
    """``vidsync serve`` on a free port, warnings only (``quiet``), its log in ``data_dir``."""
    return ServerProcess(data_dir, quiet=True).start()


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
