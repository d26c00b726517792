"""The mirror is receive-only: local edits are detected and reported, never overwritten or sent,
and ``vidsync revert`` restores the owner's version (keeping the edited copy in the trash)."""

from __future__ import annotations

from agent_join.helpers import assert_mirrors, tree, viewer_token, wait_until
from vidsync.agent.mirror.status import mirror_status


def status_of(agent) -> dict:
    return mirror_status(agent.mirror)


def test_local_edits_are_reported_kept_and_reverted(owner, api, server, make_agent):
    owner.write("cut.edl", b"owner v1")
    owner.write("keep.txt", b"untouched")
    owner.write("gone.txt", b"the user deletes this")
    owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    assert_mirrors(owner.src, agent.mirror)
    events_before = api.get(f"/api/projects/{owner.project_id}/events?since_seq=0",
                            token=owner.token).json()["last_seq"]

    (agent.mirror / "cut.edl").write_bytes(b"my local change")
    (agent.mirror / "mine.txt").write_bytes(b"a file only I have")
    (agent.mirror / "gone.txt").unlink()
    wait_until(lambda: status_of(agent)["local_edits"] == {
        "cut.edl": "modified", "mine.txt": "added", "gone.txt": "deleted"}, 10, "the edits")
    assert "local-edit" in agent.log

    # The owner updates the edited file: the local edit is not overwritten.
    owner.write("cut.edl", b"owner v2")
    owner.write("keep.txt", b"owner changed this one too")
    owner.publish()
    wait_until(lambda: (agent.mirror / "keep.txt").read_bytes() == b"owner changed this one too")
    assert (agent.mirror / "cut.edl").read_bytes() == b"my local change"
    # Nothing was sent: a viewer cannot post, and the log holds only the owner's changes.
    assert api.get(f"/api/projects/{owner.project_id}/events?since_seq=0",
                   token=owner.token).json()["last_seq"] == events_before + 2

    out = agent.run("revert", str(agent.mirror))
    assert out.returncode == 0, out.stderr
    assert tree(agent.mirror) == tree(owner.src)
    trash = agent.mirror / ".vidsync" / "trash"
    kept = {p.name: p.read_bytes() for p in trash.rglob("*") if p.is_file()}
    assert kept == {"cut.edl": b"my local change", "mine.txt": b"a file only I have"}
    wait_until(lambda: status_of(agent)["local_edits"] == {}, 10, "the edits to clear")
    assert agent.proc.poll() is None

    # Following goes on for the reverted file.
    owner.write("cut.edl", b"owner v3")
    owner.publish()
    assert_mirrors(owner.src, agent.mirror)


def test_an_edit_undone_by_hand_is_no_longer_an_edit(owner, api, server, make_agent):
    owner.write("a.txt", b"original")
    owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    assert_mirrors(owner.src, agent.mirror)
    (agent.mirror / "a.txt").write_bytes(b"oops")
    wait_until(lambda: status_of(agent)["local_edits"] == {"a.txt": "modified"}, 10, "the edit")
    (agent.mirror / "a.txt").write_bytes(b"original")
    wait_until(lambda: status_of(agent)["local_edits"] == {}, 10, "the edit to go")
    owner.write("a.txt", b"updated")
    owner.publish()
    assert_mirrors(owner.src, agent.mirror)


def test_a_symlinked_folder_in_the_mirror_is_not_written_through(owner, api, server, make_agent,
                                                                 tmp_path):
    owner.write("clips/a.mov", b"a")
    owner.publish()
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    assert_mirrors(owner.src, agent.mirror)
    agent.stop()
    outside = tmp_path / "outside"
    outside.mkdir()
    (agent.mirror / "clips/a.mov").unlink()
    (agent.mirror / "clips").rmdir()
    (agent.mirror / "clips").symlink_to(outside, target_is_directory=True)
    owner.write("clips/b.mov", b"b")
    owner.publish()
    agent.start()
    wait_until(lambda: "clips/b.mov" in status_of(agent)["failures"], 15, "the refusal")
    status = status_of(agent)
    assert status["failures"]["clips/b.mov"].startswith("refused"), status
    assert status["local_edits"] == {"clips": "added", "clips/a.mov": "deleted"}
    assert list(outside.iterdir()) == []
    assert agent.proc.poll() is None, agent.log

    # revert alone (no agent running) sets the symlink aside and brings the real folder back.
    agent.stop()
    out = agent.run("revert", str(agent.mirror))
    assert out.returncode == 0, out.stderr
    assert tree(agent.mirror) == tree(owner.src)
    assert not (agent.mirror / "clips").is_symlink()
    assert list(outside.iterdir()) == []
