"""Fixtures for the join agent's tests (helpers in ``helpers.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import Api, ServerProcess

from agent_join.helpers import Agent, Owner, Team


@pytest.fixture
def owner(server: ServerProcess, api: Api, tmp_path: Path) -> Owner:
    return Owner(server, api, tmp_path / "src")


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """``make_agent(server, token, mirror)``; every agent is killed at the end."""
    agents: list[Agent] = []

    def make(server: ServerProcess, token: str, mirror: Path | None = None) -> Agent:
        home = tmp_path / f"viewer{len(agents)}"
        home.mkdir()
        agent = Agent(server, token, mirror or tmp_path / f"mirror{len(agents)}", home)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.kill()


@pytest.fixture
def team(server: ServerProcess, api: Api, tmp_path: Path) -> Iterator[Team]:
    """An owner with ``vidsync share`` on a folder; ``team.member(name, role)`` adds agents."""
    made = Team(server, api, tmp_path)
    yield made
    made.stop()
