"""A 200 MB file: an in-place edit uploads only the changed block, a rename uploads nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness import Api

from agent_share.helpers import all_events, assert_no_duplicates, converge, wait_until
from vidsync.content.blocks import block_size_for

SIZE = 200 * 1024 * 1024


def test_mid_file_edit_uploads_only_the_changed_block(tmp_path: Path, api: Api, server, owner,
                                                      agents):
    root = tmp_path / "film"
    root.mkdir()
    with open(root / "master.mov", "wb") as f:
        for _ in range(SIZE // (8 << 20)):  # random, so no two blocks are alike
            f.write(os.urandom(8 << 20))
    agent = agents(root, server.url, owner)
    project_id = agent.project_id()
    started = time.monotonic()
    converge(api, owner, agent, timeout=120)
    first_sync_s = time.monotonic() - started
    assert agent.status()["bytes_uploaded"] == SIZE

    block = block_size_for(SIZE)
    offset = 97 * 1024 * 1024 + 1000  # well inside one block
    assert offset // block == (offset + 16) // block
    with open(root / "master.mov", "r+b") as f:
        f.seek(offset)
        f.write(b"a cut in the middle")
    converge(api, owner, agent, timeout=60)
    wait_until(lambda: agent.status()["bytes_uploaded"] > SIZE, 10, "the counter", agent)
    assert agent.status()["bytes_uploaded"] - SIZE == block

    before = agent.status()["bytes_uploaded"]
    (root / "master.mov").rename(root / "master-v2.mov")
    converge(api, owner, agent, timeout=60)
    assert agent.status()["bytes_uploaded"] == before
    events = all_events(api, owner, project_id)
    assert [(e["change"]["path"], e["change"]["op"]) for e in events] == [
        ("master.mov", "create"), ("master.mov", "update"),
        ("master-v2.mov", "create"), ("master.mov", "delete")]
    assert events[2]["created_at"] == events[3]["created_at"]  # the rename went out as one batch
    assert_no_duplicates(events)
    print(f"first sync of {SIZE >> 20} MiB: {first_sync_s:.1f} s")
