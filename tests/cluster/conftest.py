"""Fixtures for the multi-node tests: a private redis-server that a test may kill and restart (never
the machine's shared one), a scratch PostgreSQL database, and server nodes sharing both."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from harness import ServerProcess, scratch_database

from vidsync import testing

# The PostgreSQL server the nodes share: the configured one, else the machine's.
PG_URL = os.environ.get("VIDSYNC_TEST_DATABASE") or "postgresql://127.0.0.1:5432/test"


def _require_services() -> None:
    """These tests need redis-server and PostgreSQL. On a developer's machine without them they
    are skipped; in CI (which starts both) a missing service fails instead of passing unseen."""
    problem = None
    if shutil.which("redis-server") is None:
        problem = "redis-server is not installed"
    else:
        import psycopg

        try:
            psycopg.connect(PG_URL, connect_timeout=3).close()
        except psycopg.OperationalError as e:
            problem = f"no PostgreSQL at {PG_URL}: {e}"
    if problem and os.environ.get("CI"):
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)


class RedisProcess(testing.RedisProcess):
    """The private redis-server, with a client to it."""

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    _require_services()
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


@pytest.fixture
def database() -> str:
    _require_services()
    url = scratch_database(PG_URL)
    assert url is not None
    return url


@pytest.fixture
def start_node(tmp_path_factory: pytest.TempPathFactory, database: str,
               redis_server: RedisProcess) -> Iterator[Callable[..., ServerProcess]]:
    """``start_node(backplane=True)``: a server node on the shared database (and Redis)."""
    nodes: list[ServerProcess] = []
    # Content lives where every node reads it.
    blobs = tmp_path_factory.mktemp("shared-blobs")

    def start(backplane: bool = True) -> ServerProcess:
        args = ["--login-attempts", "1000", "--blob-dir", str(blobs)]
        if backplane:
            args += ["--redis", redis_server.url]
        node = ServerProcess(tmp_path_factory.mktemp("node"), args, database)
        nodes.append(node)
        return node.start()

    yield start
    for node in nodes:
        node.kill()


@pytest.fixture
def two_nodes(start_node: Callable[..., ServerProcess]) -> tuple[ServerProcess, ServerProcess]:
    with ThreadPoolExecutor(2) as pool:  # starting takes a second or two: start both at once
        first, second = pool.map(lambda _: start_node(), range(2))
    return first, second
