"""Starting and measuring what a benchmark needs, all on 127.0.0.1, all stopped by the caller.

``Stack`` is an ``AsyncExitStack`` that also owns processes: every server, scratch database and
Redis started through it is stopped (and dropped) when the benchmark leaves it, also on an error
or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vidsync.testing import (
    Process,
    RedisProcess,
    ServerProcess,
    cpu_seconds,
    machine_busy_seconds,
)

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import fanout  # noqa: E402 - its Node reference server, started the same way here

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
DEFAULT_POSTGRES = os.environ.get("VIDSYNC_TEST_DATABASE", "postgresql://127.0.0.1:5432/test")


def log(message: str) -> None:
    print(f"[capacity] {message}", file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (second field of /proc/<pid>/statm, in pages)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE






def listen_overflows() -> int:
    """Connections the kernel refused because a listen queue was full, machine-wide
    (TcpExt ListenOverflows): each one costs the client a SYN retransmission, 1 s or more."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    return int(lines[1][lines[0].index("ListenOverflows")])


@contextlib.contextmanager
def profiled(pid: int, label: str) -> Iterator[None]:
    """With CAPACITY_PROFILE=<dir>, sample the process with py-spy over the block and write
    collapsed stacks to <dir>/<label>.txt (py-spy must be installed; it is not a dependency)."""
    out_dir = os.environ.get("CAPACITY_PROFILE")
    if not out_dir:
        yield
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                            str(pid), "--format", "raw", "--rate", "200", "--nonblocking", "--threads",
                            "-o", str(Path(out_dir) / f"{label}.txt")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # attached before the measured work starts
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(30)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class CpuWindow:
    """CPU used by some processes, and by the whole machine, over a stretch of wall time."""

    pids: tuple[int, ...]
    started: float = 0.0
    cpu0: float = 0.0
    machine0: float = 0.0

    def __enter__(self) -> CpuWindow:
        self.started = time.monotonic()
        self.cpu0 = cpu_seconds(*self.pids)
        self.machine0 = machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.monotonic() - self.started
        self.cpu_s = cpu_seconds(*self.pids) - self.cpu0
        self.machine_s = machine_busy_seconds() - self.machine0

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def machine_cores(self) -> float:
        return self.machine_s / self.wall_s if self.wall_s else 0.0


class Stack(contextlib.AsyncExitStack):
    """Owns a scratch directory and everything started for one benchmark."""

    async def __aenter__(self) -> Stack:
        await super().__aenter__()
        self.workdir = Path(tempfile.mkdtemp(prefix="vidsync-capacity-"))
        self.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        return self

    async def _start(self, process: Process) -> Process:
        """Start ``process`` (in a thread: the event loop goes on) and stop it when the stack
        closes. 60 s to be ready: the machine may be busy with the previous benchmark's end."""
        self.callback(process.stop)
        await asyncio.to_thread(process.start, 60)
        return process

    async def vidsync(self, name: str = "vidsync", database: str | None = None,
                      redis: str | None = None, blob_dir: Path | None = None) -> Process:
        """``vidsync serve`` from this checkout, on SQLite in a fresh data dir unless
        ``database`` names PostgreSQL, warnings only (``quiet``); ready once /readyz says so."""
        args = []
        if redis:
            args += ["--redis", redis]
        if blob_dir:
            args += ["--blob-dir", str(blob_dir)]
        return await self._start(ServerProcess(
            self.workdir / name, args, database, quiet=True, ready_path="/readyz", cwd=REPO,
            name=name, log_path=self.workdir / f"{name}.log"))

    async def node_ref(self) -> Process:
        """The Node socket.io reference server (bench/node-ref)."""
        return await self._start(await asyncio.to_thread(fanout.node_ref,
                                                         self.workdir / "node-ref.log"))

    async def redis(self) -> str:
        """A private redis-server on a free port, no persistence; its URL."""
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        return (await self._start(RedisProcess(self.workdir))).url

    async def postgres(self, base: str = DEFAULT_POSTGRES) -> str:
        """A scratch database on the machine's PostgreSQL, dropped when the stack closes."""
        import psycopg  # only the PostgreSQL benchmarks need it

        name = "vidsync_capacity_" + uuid.uuid4().hex[:10]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        self.callback(drop)
        return base.rsplit("/", 1)[0] + "/" + name
