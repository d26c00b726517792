"""Real server processes for the tests and the benchmarks: one way to start a program on a free
port of 127.0.0.1, wait until it answers, and stop it.

``Process`` runs any command (``vidsync serve``, the Node reference server of the benchmarks,
redis-server); ``ServerProcess`` builds the ``vidsync serve`` command line from a data directory,
extra arguments and a database URL, so that ``stop`` then ``start`` is a restart on the same data;
``AgentProcess`` runs a ``vidsync share`` or ``vidsync join`` agent, which serves no port.

Only the standard library is used here: the tests' and benchmarks' HTTP clients are not
dependencies of the package.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

HOST = "127.0.0.1"  # every process started here listens, and all traffic goes, only here
VIDSYNC = [sys.executable, "-m", "vidsync"]  # this interpreter's vidsync, whatever PATH holds

# No proxy from the environment: a readiness check must reach this machine's port, nothing else.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time so far of processes ``pids``, all their threads (fields 14 and 15
    of /proc/<pid>/stat); a process that is gone counts nothing."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name (field 2) may hold spaces
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all cores spent on anything but idling (the first line of /proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# Processes started and not yet stopped: ended when this interpreter exits, so that an
# interrupted test run or benchmark leaves no server behind (each runs in its own session,
# where a Ctrl-C at the terminal does not reach it).
_RUNNING: set[Process] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_RUNNING):
        process.kill()


class Process:
    """One program serving on ``port``: ``start`` runs it and waits until it is ready, ``stop``
    ends it with SIGTERM (SIGKILL if it does not exit in time), ``kill`` with SIGKILL.

    Ready means ``GET ready_path`` answers 200, or, without a ``ready_path``, that the port accepts
    a connection. The program runs in a session of its own so that ``stop`` and ``kill`` reach
    whatever it started too (ffmpeg for a poster frame, a worker). Its output is appended to
    ``log_path`` (kept across restarts; discarded when None). ``env`` is its whole environment
    (None: this process's)."""

    def __init__(self, argv: list[str], port: int | None = None, *, name: str | None = None,
                 ready_path: str | None = None, log_path: Path | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.argv = argv
        self.port = port or free_port()
        self.name = name or Path(argv[0]).name
        self.ready_path = ready_path
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    @property
    def log(self) -> str:
        """What the program wrote so far ("" without a log file)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def command_line(self) -> list[str]:
        """The command line of the next start."""
        return self.argv

    def spawn(self) -> None:
        """Run the program without waiting for it to be ready."""
        if self.log_path is None:
            out = subprocess.DEVNULL
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps its own copy
        try:
            self.proc = subprocess.Popen(self.command_line(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.cwd, env=self.env,
                                         start_new_session=True)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        _RUNNING.add(self)

    # 30 s: a server starts in well under a second, but on a loaded 2-core box it has taken 17-20 s.
    def start(self, timeout: float = 30) -> Self:
        """Run the program and return once it is ready; fails with the end of its log if it exits
        first or is not ready after ``timeout`` seconds."""
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was "
                                   f"ready:\n{self.log[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} was not ready on {self.url} after {timeout} s:\n"
                                   f"{self.log[-3000:]}")
            time.sleep(0.05)

    def ready(self) -> bool:
        """One readiness check."""
        if self.ready_path is None:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                return True
            return False
        try:
            with _OPENER.open(self.url + self.ready_path, timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.HTTPError):  # refused, reset, or not ready yet (503)
            return False

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status (None if it
        was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        _RUNNING.discard(self)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would end it."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait()
        _RUNNING.discard(self)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:  # already gone
            pass


class ServerProcess(Process):
    """``vidsync serve`` on a free port with its own data directory (``args`` are added to the
    command line, ``database`` is its --database). ``start`` after ``stop`` or ``kill`` reuses
    the port, the data directory and the database, as a restarted server would.

    ``quiet`` sets --log-level warning, for benchmarks: the reference servers log nothing per
    request, and an access-log line per request would be charged to the server under test.
    ``command`` replaces ``python -m vidsync`` (e.g. the vidsync script of another install)."""

    def __init__(self, data_dir: Path, args: list[str] | None = None,
                 database: str | None = None, port: int | None = None, *,
                 env: dict[str, str] | None = None, command: list[str] | None = None,
                 cwd: Path | None = None, log_path: Path | None = None,
                 ready_path: str = "/healthz", quiet: bool = False,
                 name: str = "vidsync") -> None:
        self.command = command or VIDSYNC
        super().__init__(self.command, port, name=name, ready_path=ready_path,
                         log_path=log_path or data_dir / "server.log", env=env, cwd=cwd)
        self.data_dir = data_dir
        self.args = args or []
        self.database = database
        self.quiet = quiet

    def command_line(self) -> list[str]:
        cmd = [*self.command, "serve", "--host", HOST, "--port", str(self.port),
               "--data-dir", str(self.data_dir)]
        if self.quiet:
            cmd += ["--log-level", "warning"]
        if self.database:
            cmd += ["--database", self.database]
        return cmd + self.args

    def spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        super().spawn()


class AgentProcess(Process):
    """A ``vidsync`` agent (``share``, ``join``) in the background: ``start`` returns at once
    (an agent serves no port; the caller waits for what it needs, e.g. its status), ``stop`` and
    ``kill`` end it as they end a server. Configured through ``env``, as a user's shell would."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_path: Path,
                 cwd: Path | None = None) -> None:
        super().__init__([*VIDSYNC, *args], name=f"vidsync {args[0]}", log_path=log_path,
                         env=env, cwd=cwd)

    def start(self, timeout: float = 0) -> Self:
        self.spawn()
        return self


class RedisProcess(Process):
    """A private redis-server on a free port (never the machine's shared one), keeping nothing on
    disk, its log in ``workdir``; ``kill`` then ``start`` keeps the port, as a restarted Redis
    would. ``url`` is for ``vidsync serve --redis``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        port = port or free_port()
        super().__init__(["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
                          "--appendonly", "no", "--dir", str(workdir)], port,
                         log_path=workdir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"
