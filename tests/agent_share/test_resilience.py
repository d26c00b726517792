"""Nothing lost, nothing posted twice: ``kill -9`` of the agent, a server outage, a crash between
the server's answer and the agent recording it."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

from harness import Api

from agent_share.helpers import all_events, assert_no_duplicates, converge, wait_until
from vidsync.agent.share.state import ShareState


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def test_kill_9_mid_transfer_resumes_without_loss_or_duplicates(tmp_path: Path, server_factory,
                                                                agents):
    server = server_factory()
    api = Api(server.url)
    token = api.register("owner")[0]
    root = tmp_path / "film"
    total = 0
    for i in range(4):
        write(root / "rushes" / f"take{i}.mov", os.urandom(30 << 20))
        total += 30 << 20
    for i in range(20):
        write(root / "notes" / f"{i}.txt", f"note {i}")
        total += len(f"note {i}")
    agent = agents(root, server.url, token)
    project_id = agent.project_id()
    moving = wait_until(lambda: [u for u in agent.status()["uploads"] if u["sent"] > 0], 30,
                        "an upload under way", agent)
    agent.kill()
    assert agent.status()["agent_running"] is False

    agent = agents(root, server.url, token)
    converge(api, token, agent, timeout=90)
    wait_until(lambda: agent.status()["queued_changes"] == 0, 10, "an empty queue", agent)
    events = all_events(api, token, project_id)
    assert_no_duplicates(events)
    assert sorted(e["change"]["path"] for e in events) == sorted(
        [f"rushes/take{i}.mov" for i in range(4)] + [f"notes/{i}.txt" for i in range(20)])
    # The blocks stored before the kill (counted per finished file, so not in the counter) were
    # not sent again.
    resent = agent.status()["bytes_uploaded"] + sum(u["sent"] for u in moving) - total
    assert resent <= 0, f"{resent} bytes uploaded twice"


def test_server_outage_journals_and_coalesces(tmp_path: Path, server_factory, agents):
    server = server_factory()
    api = Api(server.url)
    token = api.register("owner")[0]
    root = tmp_path / "film"
    write(root / "edit.txt", "v0")
    write(root / "gone.txt", "gone")
    write(root / "old-name.txt", "renamed")
    agent = agents(root, server.url, token)
    project_id = agent.project_id()
    converge(api, token, agent)
    seq = agent.status()["last_posted_seq"]

    server.stop()
    for version in ("v1", "v2", "v3"):  # each one settles and is journaled on its own
        write(root / "edit.txt", version)
        time.sleep(1.0)
    write(root / "new.txt", "new")
    (root / "gone.txt").unlink()
    (root / "old-name.txt").rename(root / "new-name.txt")
    wait_until(lambda: agent.status()["server_reachable"] is False
               and agent.status()["queued_changes"] == 5, 20, "5 journaled changes", agent)

    # The agent dies while the server is down; a new one picks the journal up and adds to it.
    agent.kill()
    agent = agents(root, server.url, token)
    write(root / "later.txt", "later")
    wait_until(lambda: agent.status()["queued_changes"] == 6, 20, "6 journaled changes", agent)

    server.start()
    converge(api, token, agent, timeout=60)
    wait_until(lambda: agent.status()["queued_changes"] == 0, 10, "an empty queue", agent)
    events = all_events(api, token, project_id, seq)
    assert_no_duplicates(events)
    changes = [(e["change"]["path"], e["change"]["op"]) for e in events]
    assert sorted(changes) == sorted([
        ("edit.txt", "update"), ("new.txt", "create"), ("gone.txt", "delete"),
        ("new-name.txt", "create"), ("old-name.txt", "delete"), ("later.txt", "create")])
    # Sent in the order they were seen, the three edits coalesced into the last one.
    assert changes.index(("edit.txt", "update")) < changes.index(("new.txt", "create")) \
        < changes.index(("later.txt", "create"))
    edit = next(e for e in events if e["change"]["path"] == "edit.txt")
    assert edit["change"]["hash"] == hashlib.sha256(b"v3").hexdigest()


def test_crash_between_the_servers_answer_and_the_agents_record(tmp_path: Path, api: Api, server,
                                                                owner, agents):
    """The outbox as a crash leaves it: batch 1 reached the server (its answer was lost), batch
    2 never left. The restarted agent posts batch 2 once and batch 1 not again."""
    root = tmp_path / "film"
    write(root / "a.txt", "a0")
    agent = agents(root, server.url, owner)
    project_id = agent.project_id()
    converge(api, owner, agent)
    assert agent.stop() == 0

    batches = []
    for name, data in (("a.txt", b"a1"), ("b.txt", b"b1")):
        write(root / name, data)
        digest = hashlib.sha256(data).hexdigest()
        r = api.request("PUT", f"/api/projects/{project_id}/blocks/{digest}", token=owner,
                        content=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code in (200, 201), r.text
        r = api.post(f"/api/projects/{project_id}/manifests", token=owner, json={
            "hash": digest, "size": len(data), "blocks": [{"hash": digest, "size": len(data)}]})
        assert r.status_code in (200, 201), r.text
        op = "update" if name == "a.txt" else "create"
        batches.append((str(uuid.uuid4()), [{"path": name, "op": op, "hash": digest,
                                             "size": len(data), "mtime": 1}]))
    state = ShareState(root)
    state.freeze(batches)
    state.close()
    r = api.post_changes(owner, project_id, batches[0][1], key=batches[0][0])
    assert r.status_code == 200, r.text

    agent = agents(root, server.url, owner)
    converge(api, owner, agent)
    wait_until(lambda: agent.status()["outbox_batches"] == 0
               and agent.status()["queued_changes"] == 0, 10, "an empty outbox", agent)
    events = all_events(api, owner, project_id)
    assert_no_duplicates(events)
    assert [(e["change"]["path"], e["change"]["op"]) for e in events] == [
        ("a.txt", "create"), ("a.txt", "update"), ("b.txt", "create")]


def test_an_idle_agent_notices_the_server_going_and_coming_back(tmp_path: Path, server_factory,
                                                                agents):
    server = server_factory()
    api = Api(server.url)
    token = api.register("owner")[0]
    root = tmp_path / "film"
    write(root / "a.txt", "a")
    agent = agents(root, server.url, token, ["--settle", "0.3", "--heartbeat", "0.5"])
    converge(api, token, agent)
    assert agent.status()["server_reachable"] is True
    server.stop()
    wait_until(lambda: agent.status()["server_reachable"] is False, 10, "unreachable", agent)
    server.start()
    wait_until(lambda: agent.status()["server_reachable"] is True, 15, "reachable again", agent)


def test_a_file_rewritten_behind_its_stat_before_upload_goes_up_as_it_is_now(
        tmp_path: Path, server_factory, agents):
    """The indexer keeps a small file's bytes from hashing for the upload. A rewrite that puts
    size and mtime back (the index cannot see it) before the upload must not send the kept,
    outdated bytes: the ctime moved, so the file is read again, found changed, hashed again and
    posted as it is now."""
    server = server_factory()
    api = Api(server.url)
    token = api.register("owner")[0]
    root = tmp_path / "film"
    write(root / "first.txt", "first")
    agent = agents(root, server.url, token)
    project_id = agent.project_id()
    converge(api, token, agent)

    server.stop()
    write(root / "first.txt", "first, edited")  # the agent notices the outage
    wait_until(lambda: agent.status()["server_reachable"] is False, 20, "the outage seen", agent)
    frame = root / "frame.0001.exr"
    write(frame, b"old bytes")
    wait_until(lambda: agent.status()["queued_changes"] == 2, 20, "the frame hashed", agent)
    st = frame.stat()
    time.sleep(0.05)  # a later ctime, whatever the clock's granularity
    frame.write_bytes(b"new bytes")
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (frame.stat().st_size, frame.stat().st_mtime_ns, frame.stat().st_ino) == (
        st.st_size, st.st_mtime_ns, st.st_ino)

    server.start()
    converge(api, token, agent, timeout=60)
    events = all_events(api, token, project_id)
    posted = [e["change"]["hash"] for e in events if e["change"]["path"] == "frame.0001.exr"]
    assert posted == [hashlib.sha256(b"new bytes").hexdigest()]
