"""An image sequence into an empty mirror: frames fetched (content-batch/get) and installed in
batches, each checked against its hash; a frame damaged on the server's disk is never written."""

from __future__ import annotations

import asyncio
import hashlib
import os

from agent_join.helpers import publish_small, tree, viewer_token
from vidsync.agent.mirror.apply import Applier, ContentRejected
from vidsync.agent.mirror.safepath import PathPolicy
from vidsync.agent.mirror.state import MirrorState
from vidsync.client import Client

FRAMES = 2000


def test_join_once_fetches_a_frame_sequence_in_batches(api, server, owner, make_agent, tmp_path):
    frames = {f"sh010/comp/sh010_comp.{i:07d}.exr": os.urandom(2048 + i % 5)
              for i in range(FRAMES)}
    frames["sh010/notes.txt"] = b""
    asyncio.run(publish_small(server.url, owner.token, owner.project_id, frames))
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


def test_a_batch_installs_only_what_hashes_right_and_never_over_a_local_edit(tmp_path):
    """The batch installer checks each file's bytes itself (whoever fetched them): a file whose
    bytes are not its hash is refused and nothing of it is written; a file edited here is kept;
    the rest are installed, durable and recorded, in one go (real files, bytes from a dict)."""
    good, edited, tampered = b"frame 1", b"frame 2", b"frame 3"
    root = tmp_path / "mirror"
    (root / "seq").mkdir(parents=True)
    (root / "seq/2.exr").write_bytes(b"painted over here")

    async def never(row, tmp, reuse, progress):
        raise AssertionError("a batch fetches nothing")

    async def scenario() -> dict:
        state = MirrorState(root)
        applier = Applier(root, state, PathPolicy(str(root), False, False), never, lambda *a: None)
        try:
            state.record_events([
                {"seq": i + 1, "change": {"path": f"seq/{i + 1}.exr", "op": "create",
                                          "hash": hashlib.sha256(d).hexdigest(), "size": len(d),
                                          "mtime": 1_700_000_000_000}}
                for i, d in enumerate((good, edited, tampered))])
            rows = {r.path: r for r in state.pending()}
            outcomes = await applier.apply_small([
                (rows["seq/1.exr"], good), (rows["seq/2.exr"], edited),
                (rows["seq/3.exr"], b"frame 4")])  # same size, other bytes
            assert state.local("seq/1.exr").hash == hashlib.sha256(good).hexdigest()
            assert state.local("seq/3.exr") is None
            assert [r.path for r in state.pending()] == ["seq/3.exr"]
            assert state.edits() == {"seq/2.exr": "added"}
            return outcomes
        finally:
            applier.close()
            state.close()

    outcomes = asyncio.run(scenario())
    assert outcomes["seq/1.exr"] == "created" and outcomes["seq/2.exr"] == "held"
    assert isinstance(outcomes["seq/3.exr"], ContentRejected), outcomes
    assert tree(root) == {"seq/1.exr": good, "seq/2.exr": b"painted over here"}
    assert os.stat(root / "seq/1.exr").st_mtime_ns == 1_700_000_000_000 * 1_000_000
    assert list((root / ".vidsync/tmp").iterdir()) == []


def test_a_deleted_sequence_goes_in_batches_and_a_local_edit_stays(api, server, owner,
                                                                    make_agent, tmp_path):
    """The owner deletes two sequences (1,300 frames): the mirror removes them together, and the
    folders they leave empty, except a frame edited there, which it keeps and reports."""
    frames = {f"sh020/comp/sh020_comp.{i:07d}.exr": os.urandom(512) for i in range(1200)}
    frames["sh020/keep.txt"] = b"stays"
    frames.update({f"sh030/comp/sh030_comp.{i:07d}.exr": os.urandom(512) for i in range(100)})
    asyncio.run(publish_small(server.url, owner.token, owner.project_id, frames))
    agent = make_agent(server, viewer_token(api), tmp_path / "mirror")
    out = agent.run("join", "--once", "--", owner.invite(), str(agent.mirror), timeout=600)
    assert tree(agent.mirror) == frames, out.stdout[-2000:]
    edited = "sh020/comp/sh020_comp.0000500.exr"
    (agent.mirror / edited).write_bytes(b"painted over here")

    async def delete_all() -> None:
        async with Client(server.url, owner.token) as c:
            paths = [p for p in frames if "/comp/" in p]
            for i in range(0, len(paths), 1000):
                await c.post_changes(owner.project_id, [{"path": p, "op": "delete"}
                                                        for p in paths[i:i + 1000]])

    asyncio.run(delete_all())
    out = agent.run("join", "--once", str(agent.mirror), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert tree(agent.mirror) == {"sh020/keep.txt": b"stays", edited: b"painted over here"}
    assert edited in out.stdout + out.stderr  # reported, not deleted
    assert not (agent.mirror / "sh030").exists()  # emptied: gone, as on the owner's side
