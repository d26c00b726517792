"""``Client.follow`` against real servers: every event exactly once and in order, across a
SIGKILLed and restarted server, lost messages, a server without WebSocket, and removal."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable

import pytest
import pytest_asyncio
from harness import ServerProcess

from vidsync.client import ApiError, BlockRef, Client, ConnectionState, Follower, Manifest, ProjectRemoved

pytestmark = pytest.mark.asyncio


class Cast:
    """An owner who posts and a viewer who follows, on one server."""

    def __init__(self, url: str) -> None:
        self.owner = Client(url)
        self.viewer = Client(url)
        self.posted = 0

    async def setup(self) -> Cast:
        tag = uuid.uuid4().hex[:8]
        await self.owner.register(f"o-{tag}@example.com", "correct horse 1")
        await self.viewer.register(f"v-{tag}@example.com", "correct horse 1")
        self.pid = (await self.owner.create_project("follow"))["id"]
        invite = await self.owner.create_invite(self.pid)
        await self.viewer.join(invite["code"])
        self.viewer_id = (await self.viewer.me())["id"]
        digest = hashlib.sha256(b"x").hexdigest()
        await self.owner.put_block(self.pid, digest, b"x")
        await self.owner.post_manifest(self.pid, Manifest(digest, 1, (BlockRef(digest, 1),)))
        self.hash = digest
        return self

    async def post(self, n: int = 1, folder: str = "clips") -> None:
        """One batch of ``n`` changes."""
        changes = [{"path": f"{folder}/{self.posted + i}.mov", "op": "create", "hash": self.hash,
                    "size": 1} for i in range(n)]
        await self.owner.post_changes(self.pid, changes)
        self.posted += n

    async def close(self) -> None:
        await self.owner.close()
        await self.viewer.close()


class Collector:
    """Runs a follower in a task and records what it yields and which states it went through."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.seqs: list[int] = []
        self.paths: list[str] = []
        self.states: list[str] = []
        self.error: BaseException | None = None
        follower.on_state = lambda s: self.states.append(s.value)
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            async for event in self.follower:
                self.seqs.append(event["seq"])
                self.paths.append(event["change"]["path"])
        except Exception as e:
            self.error = e

    async def until(self, pred: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if self.error is not None:
                raise AssertionError(f"follower failed: {self.error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: seqs={self.seqs[-5:]} "
                                     f"states={self.states}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.follower.close()
        await asyncio.wait_for(self.task, 10)


@pytest_asyncio.fixture
async def cast_on():
    made: list[Cast] = []

    async def make(server: ServerProcess) -> Cast:
        cast = await Cast(server.url).setup()
        made.append(cast)
        return cast

    yield make
    for cast in made:
        await cast.close()


async def test_exactly_once_across_a_server_restart(server_factory, cast_on) -> None:
    server = await asyncio.to_thread(server_factory)
    cast = await cast_on(server)
    await cast.post(3)  # before following: replayed from since_seq
    got = Collector(cast.viewer.follow(cast.pid, 1, backoff_max_s=0.5))
    await got.until(lambda: got.follower.state == ConnectionState.WEBSOCKET, "websocket")
    for _ in range(10):
        await cast.post(5)
    await got.until(lambda: len(got.seqs) == 52, "52 events")
    server.kill()  # SIGKILL: no goodbye to the sockets
    await got.until(lambda: got.follower.state == ConnectionState.RECONNECTING, "reconnecting")
    await asyncio.to_thread(server.start)
    for _ in range(10):
        await cast.post(3)
    await got.until(lambda: len(got.seqs) >= 82, "82 events")
    await asyncio.sleep(0.3)  # a duplicate would arrive now
    assert got.seqs == list(range(2, 84))
    assert got.follower.seq == 83
    assert got.states[-1] == "websocket" and "reconnecting" in got.states
    await got.close()
    assert got.follower.state == ConnectionState.CLOSED


async def test_lost_messages_are_fetched_over_http(server: ServerProcess, cast_on) -> None:
    """A message that never arrives (forced here by dropping it inside the client) leaves a hole
    the next event reveals; the follower fills it from /events before going on."""
    cast = await cast_on(server)
    follower = cast.viewer.follow(cast.pid, 0)
    push = follower._push
    dropped: list[int] = []

    def lossy(kind, data, project_id=None):
        if kind == "events" and data[0] and data[0][0]["seq"] % 3 == 0 and data[0][0]["seq"] < 21:
            dropped.append(data[0][0]["seq"])
            return
        push(kind, data, project_id)

    follower._push = lossy
    fetched: set[int] = set()
    events = cast.viewer.events

    async def recording_events(*args, **kwargs):
        page = await events(*args, **kwargs)
        fetched.update(event["seq"] for event in page["events"])
        return page

    cast.viewer.events = recording_events
    got = Collector(follower)
    await got.until(lambda: follower.state == ConnectionState.WEBSOCKET, "websocket")
    for _ in range(20):
        await cast.post(1)
    await cast.post(2)  # seqs 21, 22: the last batch is delivered whole
    await got.until(lambda: len(got.seqs) >= 22, "22 events")
    await asyncio.sleep(0.2)
    assert got.seqs == list(range(1, 23))
    # Every hole was filled over HTTP (one fetch may fill several when the machine is busy).
    assert dropped and set(dropped) <= fetched
    await got.close()


async def test_http_fallback_then_back_to_socketio(server_factory, cast_on) -> None:
    """A server that refuses WebSocket, and a client that does not use Socket.IO's own polling:
    events come by long-polling /events; once WebSocket works again the follower returns to it."""
    server = await asyncio.to_thread(server_factory, ["--no-websocket"])
    cast = await cast_on(server)
    await cast.post(2)
    got = Collector(cast.viewer.follow(cast.pid, 0, transports=("websocket",), poll_wait_s=2,
                                       retry_socket_after_s=1, backoff_max_s=0.5))
    await got.until(lambda: got.follower.state == ConnectionState.HTTP_FALLBACK, "http-fallback")
    for _ in range(5):
        await cast.post(4)
    await got.until(lambda: len(got.seqs) == 22, "22 events")
    server.kill()
    server.args = []
    await asyncio.to_thread(server.start)
    await got.until(lambda: got.follower.state == ConnectionState.WEBSOCKET, "back on websocket")
    await cast.post(3)
    await got.until(lambda: len(got.seqs) >= 25, "25 events")
    await asyncio.sleep(0.2)
    assert got.seqs == list(range(1, 26))
    await got.close()


async def test_socketio_polling_when_websocket_is_refused(server_factory, cast_on) -> None:
    server = await asyncio.to_thread(server_factory, ["--no-websocket"])
    cast = await cast_on(server)
    got = Collector(cast.viewer.follow(cast.pid, 0))
    await got.until(lambda: got.follower.state == ConnectionState.POLLING, "polling")
    await cast.post(5)
    await got.until(lambda: len(got.seqs) == 5, "5 events")
    assert got.seqs == [1, 2, 3, 4, 5] and "http-fallback" not in got.states
    await got.close()


@pytest.mark.parametrize("transports", [("websocket",), ()], ids=["socketio", "http"])
async def test_removal_ends_following(server: ServerProcess, cast_on, transports) -> None:
    cast = await cast_on(server)
    await cast.post(1)
    got = Collector(cast.viewer.follow(cast.pid, 0, transports=transports, poll_wait_s=2))
    await got.until(lambda: got.seqs == [1], "first event")
    await cast.owner.remove_member(cast.pid, cast.viewer_id)
    await asyncio.wait_for(got.task, 10)
    assert isinstance(got.error, ProjectRemoved) and got.error.project_id == cast.pid


async def test_revoked_token(server: ServerProcess, cast_on) -> None:
    cast = await cast_on(server)
    got = Collector(cast.viewer.follow(cast.pid, 0, backoff_max_s=0.2))
    await got.until(lambda: got.follower.state == ConnectionState.WEBSOCKET, "websocket")
    token = cast.viewer.token
    await cast.viewer.logout()
    cast.viewer.token = token  # the follower still holds the revoked token
    await asyncio.wait_for(got.task, 10)
    assert isinstance(got.error, ApiError) and got.error.status == 401


async def test_paths_filter(server: ServerProcess, cast_on) -> None:
    cast = await cast_on(server)
    await cast.post(2, "audio")
    await cast.post(2, "clips")
    got = Collector(cast.viewer.follow(cast.pid, 0, paths=["clips"]))
    await got.until(lambda: len(got.seqs) == 2, "2 events")
    await cast.post(3, "audio")
    await got.until(lambda: got.follower.seq == 7, "seq moves on without matching events")
    await cast.post(1, "clips")
    await got.until(lambda: len(got.seqs) == 3, "3 events")
    assert got.seqs == [3, 4, 8] and all(p.startswith("clips/") for p in got.paths)
    await got.close()
