"""Restoring versions reaches a real ``vidsync join`` mirror like any edit: each of three versions
of a deleted file comes back byte-identical, and a folder comes back as it was at a time. The
``vidsync history`` and ``vidsync restore`` commands are run as processes, on the joined folder."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

from agent_join.helpers import assert_mirrors, tree, viewer_token, wait_until


def test_each_version_of_a_deleted_file_restores_in_the_mirror(owner, api, server, make_agent):
    versions = [os.urandom(400_000), os.urandom(150_000), b"third version"]
    for data in versions:
        owner.write("clips/cut.mov", data)
        owner.publish()
    owner.write("notes.txt", b"stays")
    owner.remove("clips/cut.mov")
    owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    assert_mirrors(owner.src, agent.mirror)
    # The owner works on the joined folder's project with their own login.
    as_owner = make_agent(server, owner.token, agent.mirror)

    listed = as_owner.run("history", str(agent.mirror), "clips/cut.mov", "--json")
    assert listed.returncode == 0, listed.stderr
    history = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [v["op"] for v in history] == ["delete", "update", "update", "create"]
    assert all(v["available"] for v in history[1:])
    deleted = as_owner.run("history", str(agent.mirror), "--deleted", "--json")
    assert [json.loads(line)["path"] for line in deleted.stdout.splitlines()] == ["clips/cut.mov"]

    # No --seq: a deleted file comes back at its last version.
    done = as_owner.run("restore", str(agent.mirror), "clips/cut.mov")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: tree(agent.mirror).get("clips/cut.mov") == versions[2], 20,
               "the last version in the mirror")
    for v, data in zip(reversed(history[1:]), versions, strict=True):
        done = as_owner.run("restore", str(agent.mirror), "clips/cut.mov", "--seq", str(v["seq"]))
        assert done.returncode == 0, done.stderr
        wait_until(lambda data=data: tree(agent.mirror).get("clips/cut.mov") == data, 20,
                   f"version {v['seq']} in the mirror")
    # A path given as it sits in the folder works too, from inside it.
    assert json.loads(as_owner.run("history", str(agent.mirror),
                                   str(agent.mirror / "clips/cut.mov"), "--json", "--limit", "1")
                      .stdout)["op"] == "update"

    # The viewer may read the history but not restore.
    refused = agent.run("restore", str(agent.mirror), "clips/cut.mov", "--seq",
                        str(history[1]["seq"]))
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    assert agent.proc.poll() is None, agent.log


def test_a_folder_restores_as_it_was_at_a_time(owner, api, server, make_agent):
    owner.write("edit/a.txt", b"a1")
    owner.write("edit/b.txt", b"b1")
    owner.write("other.txt", b"o1")
    owner.publish()
    then = dict(tree(owner.src))
    time.sleep(1.1)  # event times are in milliseconds: keep "before" unambiguous
    moment = datetime.now(UTC).isoformat()
    time.sleep(1.1)
    owner.write("edit/a.txt", b"a2")
    owner.remove("edit/b.txt")
    owner.write("edit/c.txt", b"created later")
    owner.write("other.txt", b"o2")
    owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    assert_mirrors(owner.src, agent.mirror)
    as_owner = make_agent(server, owner.token, agent.mirror)

    done = as_owner.run("restore", str(agent.mirror), "edit/", "--before", moment)
    assert done.returncode == 0, done.stderr
    want = {p: d for p, d in then.items() if p.startswith("edit/")} | {"other.txt": b"o2"}
    wait_until(lambda: tree(agent.mirror) == want, 20, "the folder as it was")


def test_the_mirror_empties_its_trash_after_the_retention(owner, api, server, make_agent):
    """What ``revert`` set aside stays as long as the server keeps old versions (30 days here)."""
    owner.write("a.txt", b"a")
    owner.publish()
    agent = make_agent(server, viewer_token(api))
    agent.mirror.mkdir()
    old, recent = agent.mirror / ".vidsync/trash/20260101-000000", \
        agent.mirror / ".vidsync/trash/20261128-000000"
    for folder in (old, recent):
        (folder / "clips").mkdir(parents=True)
        (folder / "clips/edited.mov").write_bytes(b"my edit")
    month_ago = time.time() - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    agent.start(owner.invite())
    wait_until(lambda: not old.exists(), 90, "the old trash folder to go")
    assert (recent / "clips/edited.mov").read_bytes() == b"my edit"
    assert_mirrors(owner.src, agent.mirror)
