"""Fixtures for the server tests: an owner with a project, and Socket.IO listeners closed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from harness import Api

from server.helpers import Listener, _Loop


@pytest.fixture(scope="session", autouse=True)
def _listeners_loop() -> Iterator[None]:
    """The listeners' shared loop ends with the run, and whatever it still runs with it."""
    yield
    _Loop.stop()


@pytest.fixture
def owner(api: Api) -> tuple[str, dict]:
    return api.register("owner")


@pytest.fixture
def project(api: Api, owner: tuple[str, dict]) -> str:
    return api.project(owner[0])


@pytest.fixture
def listen(request: pytest.FixtureRequest) -> Iterator[Callable[..., Listener]]:
    """``listen(token, transports=None, url=None)``: a connected recording client (on the shared
    server unless ``url`` names another)."""
    made: list[Listener] = []

    def make(token: str | None, transports: list[str] | None = None, url: str | None = None,
             connect: bool = True) -> Listener:
        if url is None:
            url = request.getfixturevalue("server").url
        listener = Listener(url, token, transports, connect=False)
        made.append(listener)
        if connect:
            listener.connect()
        return listener

    yield make
    for listener in made:
        listener.close()
