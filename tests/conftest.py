"""Shared fixtures; the helpers they use live in harness.py."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
from harness import SCRATCH_DATABASES, Api, ServerProcess, scratch_database


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this run's scratch databases (FORCE: a server killed by a failing test may linger)."""
    if not SCRATCH_DATABASES:
        return
    import psycopg

    for base, name in SCRATCH_DATABASES:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start servers on demand: ``server_factory(args=[...])``; all are stopped afterwards."""
    started: list[ServerProcess] = []

    def make(args: list[str] | None = None, database: str | None = None) -> ServerProcess:
        data_dir = tmp_path_factory.mktemp("server")
        server = ServerProcess(data_dir, args, database or scratch_database())
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the tests that do not stop or reconfigure it."""
    # Every test registers users from 127.0.0.1, which the per-address limit would soon refuse.
    proc = ServerProcess(tmp_path_factory.mktemp("shared-server"), ["--login-attempts", "100000"],
                         database=scratch_database())
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.http.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly which suites were skipped and why (a missing service, browser or tool), one
    line per folder and reason; with ``VIDSYNC_SKIP_REPORT`` set, add the lines to that file
    (``make test`` prints them all at the very end)."""
    groups: Counter[tuple[str, str]] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        folder = report.nodeid.split("::")[0].rsplit("/", 1)[0]
        groups[(folder, reason.removeprefix("Skipped: "))] += 1
    if not groups:
        return
    lines = [f"{folder}: {n} test(s) skipped: {reason}" for (folder, reason), n in sorted(groups.items())]
    terminalreporter.section("skipped, and why")
    for line in lines:
        terminalreporter.write_line(line)
    report_file = os.environ.get("VIDSYNC_SKIP_REPORT")
    if report_file:
        with open(report_file, "a") as f:
            f.writelines(line + "\n" for line in lines)
