"""A real join agent mirrors what the owner publishes: after each scenario the mirror equals the
source byte for byte."""

from __future__ import annotations

import json
import os
import sqlite3

from agent_join.helpers import assert_mirrors, tree, viewer_token, wait_until


def test_every_kind_of_change_is_mirrored(owner, api, server, make_agent):
    owner.write("intro.txt", b"hello")
    owner.write("clips/day1/take1.mov", os.urandom(300_000))
    owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    assert_mirrors(owner.src, agent.mirror)  # the snapshot, downloaded

    owner.write("live.txt", b"created while following")
    owner.publish()
    assert_mirrors(owner.src, agent.mirror)

    owner.write("intro.txt", b"hello, modified")
    owner.publish()
    assert_mirrors(owner.src, agent.mirror)

    owner.remove("live.txt")
    owner.publish()
    assert_mirrors(owner.src, agent.mirror)

    # A rename is a delete and a create; the emptied folder goes too.
    data = (owner.src / "clips/day1/take1.mov").read_bytes()
    owner.remove("clips/day1/take1.mov")
    owner.write("clips/day2/take1-final.mov", data)
    owner.publish()
    assert_mirrors(owner.src, agent.mirror)
    assert not (agent.mirror / "clips/day1").exists()

    owner.write("a/b/c/d/e/deep.txt", b"nested")
    owner.write("empty.bin", b"")
    owner.write("a/b/also-empty", b"")
    owner.publish()
    assert_mirrors(owner.src, agent.mirror)
    assert (agent.mirror / "empty.bin").stat().st_size == 0

    owner.write("montage/été/café ☕ 日本語.txt", "naïve ✓".encode())
    owner.write("Ünïcödé.md", b"x" * 10)
    owner.publish()
    assert_mirrors(owner.src, agent.mirror)

    # A file becomes a folder of the same name, within one batch (delete first, then create).
    owner.remove("intro.txt")
    owner.write("intro.txt/readme", b"now a folder")
    owner.publish()
    assert_mirrors(owner.src, agent.mirror)

    # The state records the whole log, and nothing is left pending or in the temp folder.
    db = sqlite3.connect(agent.mirror / ".vidsync/mirror.db")
    last_seq = json.loads(db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()[0])
    assert last_seq == api.get(f"/api/projects/{owner.project_id}/events?since_seq=0",
                               token=owner.token).json()["last_seq"]
    assert not list((agent.mirror / ".vidsync/tmp").iterdir())
    assert agent.proc.poll() is None, agent.log


def test_only_mirrors_the_chosen_folders(owner, api, server, make_agent):
    owner.write("clips/a.mov", b"a")
    owner.write("audio/b.wav", b"b")
    owner.write("notes.txt", b"c")
    owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite(), "--only", "clips")
    wait_until(lambda: (agent.mirror / "clips/a.mov").exists(), what="the snapshot")
    owner.write("clips/new.mov", b"new")
    owner.write("audio/new.wav", b"not mirrored")
    owner.publish()
    wait_until(lambda: (agent.mirror / "clips/new.mov").exists(), what="a live event")
    expected = {p: d for p, d in tree(owner.src).items() if p.startswith("clips/")}
    assert tree(agent.mirror) == expected

    # Resumed with other prefixes: a new snapshot; what left the selection leaves the mirror.
    agent.stop()
    agent.start(None, "--only", "audio/", "--once")
    assert agent.proc.wait(30) == 0, agent.log
    assert tree(agent.mirror) == {p: d for p, d in tree(owner.src).items() if p.startswith("audio/")}


def test_once_syncs_and_exits_then_resumes_from_the_recorded_seq(owner, api, server, make_agent):
    owner.write("one.txt", b"1")
    owner.publish()
    agent = make_agent(server, viewer_token(api))
    agent.start(owner.invite(), "--once")
    assert agent.proc.wait(30) == 0, agent.log
    assert tree(agent.mirror) == tree(owner.src), agent.log

    owner.write("two.txt", b"2")
    owner.write("one.txt", b"1 changed")
    owner.publish()
    agent.start(None, "--once")  # resume: only the folder, no invite
    assert agent.proc.wait(30) == 0, agent.log
    assert tree(agent.mirror) == tree(owner.src), agent.log
    assert "snapshot at" not in agent.log.split("mirroring project")[-1], agent.log  # caught up
