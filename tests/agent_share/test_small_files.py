"""An image sequence: thousands of small files go up in batches (content-batch) and arrive on the
server byte for byte, beside a large file that still goes block by block."""

from __future__ import annotations

import os
from pathlib import Path

from harness import Api

from agent_share.helpers import converge

FRAMES = 3000


def test_a_frame_sequence_reaches_the_server_byte_for_byte(tmp_path: Path, api: Api, server,
                                                             owner, agents) -> None:
    root = tmp_path / "shot"
    for i in range(FRAMES):
        folder = root / "comp" / f"{i // 500:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"sh010_comp.{i:07d}.exr").write_bytes(os.urandom(2048 + i % 7))
    (root / "empty.txt").write_bytes(b"")
    (root / "edge.bin").write_bytes(os.urandom(128 * 1024))  # the largest file a batch carries
    (root / "plate.mov").write_bytes(os.urandom(3 * 1024 * 1024))  # block by block
    agent = agents(root, server.url, owner)
    tree = converge(api, owner, agent, timeout=240)
    assert len(tree) == FRAMES + 3
    status = agent.status()
    assert status["files_uploaded"] >= FRAMES
    assert "refused" not in agent.log
