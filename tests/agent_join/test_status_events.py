"""``vidsync status`` for a mirror, and ``vidsync events PROJECT --follow`` printing live."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

from harness import ROOT, VIDSYNC

from agent_join.helpers import assert_mirrors, viewer_token, wait_until
from vidsync.agent.mirror.status import mirror_status


def test_status_shows_connection_seq_and_pending(owner, api, server, make_agent):
    owner.write("a.txt", b"a")
    seq = owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    assert_mirrors(owner.src, agent.mirror)

    def status() -> dict:
        return mirror_status(agent.mirror)

    wait_until(lambda: status()["connection"] == "websocket", 10, "the connection")
    s = json.loads(agent.run("status", str(agent.mirror), "--json").stdout)["mirror"]
    assert (s["last_seq"], s["pending_downloads"], s["queued_uploads"]) == (seq, 0, 0)
    assert s["project_id"] == owner.project_id and s["agent_pid"] == agent.proc.pid
    text = agent.run("status", str(agent.mirror)).stdout
    assert "connection:        websocket" in text and f"last seq:          {seq}" in text

    agent.stop()
    s = status()
    assert s["connection"] == "agent not running" and s["agent_pid"] is None
    # Changes made while the agent is away are pending until it is back.
    owner.write("b.txt", b"b")
    owner.publish()
    agent.start()
    assert_mirrors(owner.src, agent.mirror)
    wait_until(lambda: status()["last_seq"] == seq + 1, 10, "the new seq")


def test_status_of_a_folder_that_is_neither(tmp_path, make_agent, server, api):
    agent = make_agent(server, viewer_token(api))
    out = agent.run("status", str(tmp_path))
    assert out.returncode != 0 and "neither a shared folder nor a mirror" in out.stderr


def test_events_follow_prints_events_live(owner, api, server, make_agent):
    owner.write("before.txt", b"1")
    seq = owner.publish()
    agent = make_agent(server, viewer_token(api))
    assert agent.run("join", "--once", "--", owner.invite(), str(agent.mirror)).returncode == 0

    history = agent.run("events", owner.project_id)
    assert history.returncode == 0, history.stderr
    assert "create  before.txt" in history.stdout

    proc = subprocess.Popen([*VIDSYNC, "events", "film", "--follow", "--json", "--since", str(seq)],
                            env=agent.env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        owner.write("live.txt", b"2")
        owner.publish()
        event = json.loads(lines.get(timeout=20))
        assert event["change"]["path"] == "live.txt" and event["change"]["op"] == "create"
        time.sleep(0.5)  # now surely following live
        owner.remove("live.txt")
        owner.publish()
        event = json.loads(lines.get(timeout=20))
        assert (event["seq"], event["change"]["op"]) == (seq + 2, "delete")
    finally:
        proc.terminate()
        proc.wait(10)


def test_join_refusals(tmp_path, make_agent, server, api):
    agent = make_agent(server, viewer_token(api))
    out = agent.run("join", "no-such-invite", str(tmp_path / "m"))
    assert out.returncode != 0 and "no such invite code (invite_not_found)" in out.stderr
    out = agent.run("join", "--", "-codes-may-start-with-a-dash", str(tmp_path / "m"))
    assert out.returncode != 0 and "no such invite code (invite_not_found)" in out.stderr
    out = agent.run("join", "http://elsewhere.example:5000/join/abc", str(tmp_path / "m"))
    assert out.returncode != 0 and "log in there first" in out.stderr
    (tmp_path / "shared" / ".vidsync").mkdir(parents=True)
    (tmp_path / "shared" / ".vidsync" / "share.db").write_bytes(b"")
    out = agent.run("join", "code", str(tmp_path / "shared"))
    assert out.returncode != 0 and "is a shared folder" in out.stderr
