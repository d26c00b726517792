"""An image sequence into an empty mirror: frames fetched in batches (content-batch/get), each
checked against its hash; a frame damaged on the server's disk is never written."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

from agent_join.helpers import tree, viewer_token
from vidsync.client import Client
from vidsync.content.batches import pack

FRAMES = 2000


async def publish(url: str, token: str, project_id: str, frames: dict[str, bytes]) -> None:
    async with Client(url, token) as c:
        files = [(hashlib.sha256(d).hexdigest(), d) for d in frames.values()]
        for batch in pack((f, len(f[1])) for f in files):
            await c.put_small_files(project_id, batch)
        changes = [{"path": p, "op": "create", "hash": hashlib.sha256(d).hexdigest(),
                    "size": len(d), "mtime": int(time.time() * 1000)} for p, d in frames.items()]
        for i in range(0, len(changes), 1000):
            await c.post_changes(project_id, changes[i:i + 1000])


def test_join_once_fetches_a_frame_sequence_in_batches(api, server, owner, make_agent, tmp_path):
    frames = {f"sh010/comp/sh010_comp.{i:07d}.exr": os.urandom(2048 + i % 5)
              for i in range(FRAMES)}
    frames["sh010/notes.txt"] = b""
    asyncio.run(publish(server.url, owner.token, owner.project_id, frames))
    damaged = "sh010/comp/sh010_comp.0000777.exr"
    digest = hashlib.sha256(frames[damaged]).hexdigest()
    block = server.data_dir / "blobs" / owner.project_id / "blocks" / digest[:2] / digest
    block.write_bytes(b"\0" * len(frames[damaged]))

    agent = make_agent(server, viewer_token(api), tmp_path / "mirror")
    out = agent.run("join", "--once", "--", owner.invite(), str(agent.mirror), timeout=600)
    got = tree(agent.mirror)
    assert damaged not in got, "a frame that does not match its hash was written"
    assert got == {p: d for p, d in frames.items() if p != damaged}, out.stdout[-2000:]
    assert damaged in out.stdout + out.stderr
