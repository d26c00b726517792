"""Applying an event twice is harmless: a replayed event is ignored by the state, and applying a
path that is already in line downloads nothing (real files, content from a local dict)."""

from __future__ import annotations

import asyncio
import hashlib

from vidsync.agent.mirror.apply import Applier
from vidsync.agent.mirror.safepath import PathPolicy
from vidsync.agent.mirror.state import MirrorState

DATA = b"the owner's file"
DIGEST = hashlib.sha256(DATA).hexdigest()


def event(seq: int, op: str = "create") -> dict:
    if op == "delete":
        return {"seq": seq, "change": {"path": "a/b.txt", "op": op, "hash": None, "size": None}}
    return {"seq": seq, "change": {"path": "a/b.txt", "op": op, "hash": DIGEST, "size": len(DATA),
                                   "mtime": 1_700_000_000_000}}


def test_events_and_applies_repeated(tmp_path):
    fetched: list[str] = []

    async def fetch(row, tmp, reuse, progress):
        fetched.append(row.path)
        with open(tmp, "wb") as f:  # noqa: ASYNC230 - a few bytes
            f.write(DATA)

    async def scenario() -> list[str]:
        root = tmp_path / "mirror"
        root.mkdir()
        state = MirrorState(root)
        applier = Applier(root, state, PathPolicy(str(root), False, False), fetch, lambda *a: None)
        try:
            outcomes = []
            assert len(state.record_events([event(1)])) == 1
            assert state.record_events([event(1)]) == []  # the same event again: ignored
            for row in state.pending():
                outcomes.append(await applier.apply(row))
            outcomes.append(await applier.apply(state.remote("a/b.txt")))  # applied again
            assert state.pending() == []
            state.record_events([event(2, "delete")])
            row = state.pending()[0]
            outcomes += [await applier.apply(row), await applier.apply(row)]
            assert state.last_seq == 2 and state.pending() == []
            return outcomes
        finally:
            applier.close()
            state.close()

    assert asyncio.run(scenario()) == ["created", "unchanged", "deleted", "unchanged"]
    assert fetched == ["a/b.txt"]  # downloaded once
    assert not (tmp_path / "mirror" / "a").exists()
