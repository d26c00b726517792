"""The process harness itself (vidsync.testing): a failed start says why, a restart keeps the port
and the data, and stopping a program ends what it started too."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from harness import Api, ServerProcess, free_port, wait_until

from vidsync.testing import Process


def test_a_server_that_exits_at_start_says_why(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", ["--no-such-option"])
    with pytest.raises(RuntimeError, match="exited with 2 before it was ready(.|\n)*--no-such-option"):
        server.start()


def test_a_restart_keeps_the_port_and_the_data(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        with httpx.Client() as http:
            api = Api(server.url)
            token, _ = api.register("ada")
            url = server.url
            assert server.stop() == 0
            with pytest.raises(httpx.ConnectError):
                http.get(url + "/healthz")
            assert server.start().url == url
            assert api.get("/api/auth/me", token=token).status_code == 200
            api.http.close()
    finally:
        server.kill()


def gone(pid: int) -> bool:
    """Ended: reaped, or a zombie waiting for whoever adopted it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_stop_ends_what_the_program_started(tmp_path: Path) -> None:
    port, child_pid = free_port(), tmp_path / "child.pid"
    # A shell leaves a child behind (as a server leaves an ffmpeg), then becomes an HTTP server.
    program = Process(["sh", "-c", f"sleep 600 & echo $! > {child_pid}; exec {sys.executable} "
                       f"-m http.server --bind 127.0.0.1 {port}"], port, ready_path="/",
                      log_path=tmp_path / "log", cwd=tmp_path).start()
    child = int(child_pid.read_text())
    assert not gone(child)
    program.stop()
    wait_until(lambda: gone(child), 5, "the program's child to end")
