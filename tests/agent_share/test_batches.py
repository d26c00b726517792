"""Cutting a long run of changes into batches the server accepts (count and body size)."""

from __future__ import annotations

import orjson

from vidsync.agent.share.sync import MAX_BATCH_JSON, split_batches
from vidsync.changes import MAX_CHANGES_PER_BATCH


def change(path: str) -> dict:
    return {"path": path, "op": "create", "hash": "0" * 64, "size": 1, "mtime": 0}


def test_batches_hold_at_most_1000_changes_in_order():
    changes = [change(f"f/{i}") for i in range(2500)]
    batches = split_batches(changes)
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [c for b in batches for c in b] == changes


def test_batches_of_long_paths_stay_under_the_body_limit():
    changes = [change(f"{i:04d}/" + "x" * 4000) for i in range(MAX_CHANGES_PER_BATCH)]
    batches = split_batches(changes)
    assert len(batches) > 1
    assert all(len(orjson.dumps({"changes": b})) <= MAX_BATCH_JSON for b in batches)
    assert [c for b in batches for c in b] == changes
    assert split_batches([]) == []
