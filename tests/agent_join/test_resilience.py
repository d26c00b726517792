"""Crashes and outages: a join agent killed mid-transfer, a server stopped for a while. Each ends
with the mirror equal to the source, nothing lost and nothing applied twice."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time

from harness import Api

from agent_join.helpers import (
    Owner,
    assert_mirrors,
    publish_small,
    tree,
    viewer_token,
    wait_until,
)
from vidsync.agent.mirror.status import mirror_status

FRAMES = 5000


def recorded_seq(mirror) -> int:
    db = sqlite3.connect(mirror / ".vidsync/mirror.db")
    try:
        return json.loads(db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()[0])
    finally:
        db.close()


def test_join_agent_killed_mid_transfer_resumes(owner, api, server, make_agent):
    owner.write("small/1.txt", b"one")
    owner.write("big.mov", os.urandom(40 * 1024 * 1024))
    owner.write("small/2.txt", b"two")
    owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    tmp = agent.mirror / ".vidsync" / "tmp"
    wait_until(lambda: tmp.is_dir() and any(tmp.iterdir()), 30, "a download in progress")
    agent.kill()
    partial = list(tmp.iterdir())
    assert partial, "the kill should land mid-transfer"
    assert not (agent.mirror / "big.mov").exists()  # never a half-written file in place

    owner.write("small/3.txt", b"three, published while the agent was dead")
    seq = owner.publish()
    agent.start()
    assert_mirrors(owner.src, agent.mirror, timeout=60)
    wait_until(lambda: recorded_seq(agent.mirror) == seq, 10, "the seq to be recorded")
    assert list(tmp.iterdir()) == []
    status = mirror_status(agent.mirror)
    assert (status["pending_downloads"], status["failures"], status["local_edits"]) == (0, {}, {})


def count_files(mirror) -> int:
    """Files in the mirror (``.vidsync/`` aside), without reading them: quick enough to poll."""
    return sum(len(files) for folder, _, files in os.walk(mirror)
               if ".vidsync" not in os.path.relpath(folder, mirror).split(os.sep))


def recorded_files(mirror) -> dict[str, str]:
    db = sqlite3.connect(mirror / ".vidsync/mirror.db")
    try:
        return dict(db.execute("SELECT path, hash FROM local"))
    finally:
        db.close()


def test_join_agent_killed_during_batches_of_small_files_resumes(owner, api, server, make_agent):
    """Small files are installed in batches (temp files fsynced together, renamed, folders
    fsynced, one transaction). A kill -9 at any moment leaves each file absent or whole, and
    records only files that are on disk as recorded; the restarted agent finishes with every
    file identical, adopting without complaint what was renamed but not yet recorded."""
    frames = {f"sh020/comp_{i // 1000:03d}/sh020_comp.{i:07d}.exr": os.urandom(1024 + i % 7)
              for i in range(FRAMES)}
    asyncio.run(publish_small(server.url, owner.token, owner.project_id, frames))
    agent = make_agent(server, viewer_token(api))
    invite: str | None = owner.invite()
    for at_least in (1, FRAMES // 5):  # killed in the first batches, then further on
        agent.start(invite)
        invite = None
        wait_until(lambda n=at_least: count_files(agent.mirror) >= n, 60, f"{at_least} frames")
        agent.kill()
        got = tree(agent.mirror)
        assert len(got) < FRAMES, "the kill should land before the last batch"
        assert all(frames[p] == d for p, d in got.items())  # never a partial or foreign file
        for path, digest in recorded_files(agent.mirror).items():
            assert hashlib.sha256(got[path]).hexdigest() == digest, path  # nothing recorded early

    agent.start()
    wait_until(lambda: tree(agent.mirror) == frames, 120, "every frame")
    wait_until(lambda: mirror_status(agent.mirror)["pending_downloads"] == 0, 30, "nothing pending")
    status = mirror_status(agent.mirror)
    assert (status["failures"], status["local_edits"]) == ({}, {})
    recorded = recorded_files(agent.mirror)
    assert recorded == {p: hashlib.sha256(d).hexdigest() for p, d in frames.items()}
    assert list((agent.mirror / ".vidsync" / "tmp").iterdir()) == []


def test_server_stopped_for_a_while(server_factory, tmp_path, make_agent):
    server = server_factory()
    api = Api(server.url)
    owner = Owner(server, api, tmp_path / "src")
    owner.write("a.txt", b"a")
    owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    assert_mirrors(owner.src, agent.mirror)

    owner.write("b.txt", b"published just before the outage")
    owner.publish()
    server.stop()
    wait_until(lambda: mirror_status(agent.mirror)["connection"] == "reconnecting", 15,
               "the agent to notice")
    time.sleep(2)
    server.start()
    owner.write("c.txt", b"after the outage")
    owner.remove("a.txt")
    seq = owner.publish()
    assert_mirrors(owner.src, agent.mirror, timeout=30)
    wait_until(lambda: recorded_seq(agent.mirror) == seq, 10, "the seq")
    assert agent.proc.poll() is None, agent.log
    api.http.close()


def test_removed_from_the_project_stops_the_agent(owner, api, server, make_agent):
    owner.write("a.txt", b"a")
    owner.publish()
    token, user = api.register("viewer")
    agent = make_agent(server, token).start(owner.invite())
    assert_mirrors(owner.src, agent.mirror)
    wait_until(lambda: mirror_status(agent.mirror)["connection"] == "websocket", 10, "live")
    r = api.delete(f"/api/projects/{owner.project_id}/members/{user['id']}", token=owner.token)
    assert r.status_code == 204
    assert agent.proc.wait(15) != 0
    assert "no longer following the project" in agent.log
    assert (agent.mirror / "a.txt").read_bytes() == b"a"  # what was mirrored stays
