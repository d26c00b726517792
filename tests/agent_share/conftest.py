"""Fixtures for the owner agent's tests: an owner account and agents stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import Api

from agent_share.helpers import Agent


@pytest.fixture
def owner(api: Api) -> str:
    return api.register("owner")[0]


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """``agents(root, server_url, token, args=None)``: a started ``vidsync share``; all are
    killed at the end."""
    made: list[Agent] = []

    def make(root: Path, server_url: str, token: str, args: list[str] | None = None) -> Agent:
        agent = Agent(root, server_url, token, tmp_path / "config", args)
        made.append(agent)
        return agent.start()

    yield make
    for agent in made:
        agent.kill()
