"""End to end with both real agents: ``vidsync share`` on the owner's folder, ``vidsync join`` with
the invite link it prints, edits made on disk. After each scenario the mirror equals the source."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator

import pytest
from agent_share.helpers import Agent as ShareAgent
from agent_share.helpers import all_events, assert_no_duplicates
from harness import ROOT, VIDSYNC

from agent_join.helpers import Agent, assert_mirrors, viewer_token, wait_until


def invite_link(share) -> str:
    out = subprocess.run([*VIDSYNC, "invite", str(share.root)], env=share.env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return re.search(r"^link: (\S+)$", out.stdout, re.M).group(1)


@pytest.fixture
def share_agent(tmp_path) -> Iterator[Callable[..., ShareAgent]]:
    made: list[ShareAgent] = []

    def make(root, server_url: str, token: str) -> ShareAgent:
        made.append(ShareAgent(root, server_url, token, tmp_path / "owner-config"))
        return made[-1].start()

    yield make
    for agent in made:
        agent.kill()


def test_share_to_join_end_to_end(api, server, share_agent, make_agent, tmp_path):
    owner = api.register("owner")[0]
    src = tmp_path / "project"
    src.mkdir()
    (src / "edit.prproj").write_bytes(b"v1")
    (src / "footage").mkdir()
    (src / "footage" / "a.mov").write_bytes(os.urandom(200_000))
    share = share_agent(src, server.url, owner)
    project_id = share.project_id()
    join: Agent = make_agent(server, viewer_token(api)).start(invite_link(share))
    assert_mirrors(src, join.mirror, timeout=30)

    (src / "edit.prproj").write_bytes(b"v2, saved by the editor")
    (src / "new.txt").write_bytes(b"created")
    assert_mirrors(src, join.mirror, timeout=20)

    (src / "new.txt").unlink()
    os.rename(src / "footage" / "a.mov", src / "footage" / "renamed.mov")
    assert_mirrors(src, join.mirror, timeout=20)

    (src / "deep" / "er" / "est").mkdir(parents=True)
    (src / "deep" / "er" / "est" / "x.wav").write_bytes(b"nested")
    (src / "empty").write_bytes(b"")
    (src / "Séquence 1 — été ☀.xml").write_text("unicode", encoding="utf-8")
    assert_mirrors(src, join.mirror, timeout=20)
    owner_side = join.run("status", str(src)).stdout  # status knows both kinds of folder
    assert "shared as" in owner_side and "queued uploads:    0 changes" in owner_side, owner_side

    # The owner's agent killed with -9 while a big file is uploading, then restarted.
    (src / "big.mov").write_bytes(os.urandom(24 * 1024 * 1024))
    wait_until(lambda: share.status().get("uploads"), 30, "the upload to start")
    share.kill()
    share.start()
    assert_mirrors(src, join.mirror, timeout=60)
    assert_no_duplicates(all_events(api, owner, project_id))
    assert join.proc.poll() is None, join.log
