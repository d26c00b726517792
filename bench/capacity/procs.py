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
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
NODE_REF = BENCH / "node-ref"
HOST = "127.0.0.1"  # every process started here listens, and all traffic goes, only here
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DEFAULT_POSTGRES = os.environ.get("VIDSYNC_TEST_DATABASE", "postgresql://127.0.0.1:5432/test")


def log(message: str) -> None:
    print(f"[capacity] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (second field of /proc/<pid>/statm, in pages)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time of processes (fields 14 and 15 of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name (field 2) may hold spaces
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all cores spent on anything but idling (first line of /proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


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


def spawn_quiet(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)


class Server:
    """A server under test in its own process group, so stopping it stops all of it."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path,
                 env: dict | None = None) -> None:
        self.name = name
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return rss_bytes(self.pid)

    async def wait_ready(self, path: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                                       f"see {self.log_path}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.url + path) as r:
                        if r.status < 500:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} is not ready on {self.url} after {timeout_s} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class Stack(contextlib.AsyncExitStack):
    """Owns a scratch directory and everything started for one benchmark."""

    async def __aenter__(self) -> Stack:
        await super().__aenter__()
        self.workdir = Path(tempfile.mkdtemp(prefix="vidsync-capacity-"))
        self.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        return self

    def _own(self, server: Server) -> Server:
        self.callback(server.stop)
        return server

    async def vidsync(self, name: str = "vidsync", database: str | None = None,
                      redis: str | None = None, blob_dir: Path | None = None) -> Server:
        """``vidsync serve`` from this checkout, on SQLite in a fresh data dir unless
        ``database`` names PostgreSQL. Warnings only: an access-log line per request would be
        charged to the server under test."""
        port = free_port()
        argv = [str(Path(sys.executable).parent / "vidsync"), "serve", "--host", HOST,
                "--port", str(port), "--data-dir", str(self.workdir / name),
                "--log-level", "warning"]
        if database:
            argv += ["--database", database]
        if redis:
            argv += ["--redis", redis]
        if blob_dir:
            argv += ["--blob-dir", str(blob_dir)]
        server = self._own(Server(name, argv, port, self.workdir / f"{name}.log"))
        await server.wait_ready("/readyz")
        return server

    async def node_ref(self) -> Server:
        """The Node socket.io reference server (bench/node-ref), installed with ``npm ci``
        when missing."""
        if not (NODE_REF / "node_modules" / ".package-lock.json").exists():
            log("npm ci in bench/node-ref")
            await asyncio.to_thread(subprocess.run, ["npm", "ci", "--no-audit", "--no-fund"],
                                    cwd=NODE_REF, check=True, stdout=sys.stderr)
        port = free_port()
        argv = ["node", str(NODE_REF / "server.js"), "--host", HOST, "--port", str(port)]
        server = self._own(Server("node-ref", argv, port, self.workdir / "node-ref.log"))
        await server.wait_ready("/socket.io/?EIO=4&transport=polling")
        return server

    async def redis(self) -> str:
        """A private redis-server on a free port, no persistence."""
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        port = free_port()
        proc = spawn_quiet(["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                            "--appendonly", "no", "--dir", str(self.workdir)])

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        self.callback(stop)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
                return f"redis://{HOST}:{port}/0"
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            await asyncio.sleep(0.05)

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
