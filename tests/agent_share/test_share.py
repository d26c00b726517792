"""``vidsync share``: every kind of change reaches the server, byte for byte, once."""

from __future__ import annotations

import collections
import os
import shutil
import threading
import time
import unicodedata
from pathlib import Path

from harness import Api

from agent_share.helpers import (
    all_events,
    assert_no_duplicates,
    converge,
    server_tree,
    wait_until,
)


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def test_changes_reach_the_server_byte_for_byte(tmp_path: Path, api: Api, server, owner, agents):
    root = tmp_path / "film"
    nfd = unicodedata.normalize("NFD", "Séquence été")
    write(root / "edit.prproj", os.urandom(300_000))
    write(root / "clips" / "day1" / "a.mov", os.urandom(1_000_000))
    write(root / "clips" / "day1" / "b.mov", os.urandom(50_000))
    write(root / "empty.txt", b"")
    write(root / nfd / "notes.txt", "déjà vu")  # NFD on disk, NFC on the server
    write(root / "音楽" / "テーマ.wav", os.urandom(70_000))
    agent = agents(root, server.url, owner)
    project_id = agent.project_id()
    tree = converge(api, owner, agent)
    assert "Séquence été/notes.txt" in tree and "empty.txt" in tree

    # modify, delete, rename a file and a folder, create nested folders and another empty file
    with open(root / "edit.prproj", "r+b") as f:
        f.seek(1000)
        f.write(b"changed")
    (root / "clips" / "day1" / "b.mov").unlink()
    (root / "clips" / "day1" / "a.mov").rename(root / "clips" / "a-final.mov")
    (root / "音楽").rename(root / "music")
    write(root / "renders" / "v1" / "deep" / "out.mp4", os.urandom(200_000))
    write(root / "renders" / "v1" / "empty", b"")
    tree = converge(api, owner, agent)
    assert {"clips/a-final.mov", "music/テーマ.wav", "renders/v1/empty"} <= set(tree)

    wait_until(lambda: agent.status()["queued_changes"] == 0, 10, "an empty queue", agent)
    events = all_events(api, owner, project_id)
    assert_no_duplicates(events)
    status = agent.status()
    assert status["last_posted_seq"] == events[-1]["seq"]
    assert status["agent_running"] and status["server_reachable"] is True
    assert status["outbox_batches"] == 0 and status["uploads"] == []
    ops = {(e["change"]["path"], e["change"]["op"]) for e in events}
    assert {("clips/day1/b.mov", "delete"), ("clips/day1/a.mov", "delete"),
            ("edit.prproj", "update"), ("音楽/テーマ.wav", "delete")} <= ops


def test_ignore_rules_defaults_and_symlinks(tmp_path: Path, api: Api, server, owner, agents):
    root = tmp_path / "film"
    outside = tmp_path / "outside"
    write(outside / "secret.key", "not yours")
    write(root / ".vidsyncignore", "renders/\n*.log\n!keep.tmp\n")
    write(root / "clip.mov", b"clip")
    write(root / "renders" / "big.mp4", b"render")
    write(root / "sub" / "renders" / "x.mp4", b"render")
    write(root / "debug.log", b"log")
    write(root / "keep.tmp", b"kept: a user rule overrides a default")
    for junk in (".clip.mov.swp", "notes.txt~", "~$script.docx", ".DS_Store", "x.tmp",
                 "dl.crdownload"):
        write(root / junk, b"junk")
    write(root / "private.txt", b"shared until ignored")
    os.symlink(outside, root / "link-dir")
    os.symlink(outside / "secret.key", root / "link-file")
    agent = agents(root, server.url, owner)
    project_id = agent.project_id()
    expected = {"clip.mov", "keep.tmp", "private.txt"}
    wait_until(lambda: set(server_tree(api, owner, project_id)) == expected, 20,
               "only the shareable files", agent)

    # Ignoring a shared file removes it from the server; new junk never appears.
    with open(root / ".vidsyncignore", "a") as f:
        f.write("private.txt\n")
    write(root / "late.swp", b"junk")
    write(root / "late.mov", b"late")
    expected = {"clip.mov", "keep.tmp", "late.mov"}
    wait_until(lambda: set(server_tree(api, owner, project_id)) == expected, 20,
               "private.txt to be unshared", agent)
    events = all_events(api, owner, project_id)
    assert ("private.txt", "delete") in {(e["change"]["path"], e["change"]["op"]) for e in events}
    assert not any("secret" in e["change"]["path"] or e["change"]["path"].startswith("link")
                   for e in events)


def test_one_window_is_one_batch_split_past_1000(tmp_path: Path, api: Api, server, owner, agents):
    root = tmp_path / "film"
    write(root / "first.txt", "first")
    agent = agents(root, server.url, owner, ["--debounce", "1.0", "--settle", "0.4"])
    project_id = agent.project_id()
    converge(api, owner, agent)
    after = agent.status()["last_posted_seq"]
    staging = tmp_path / "export"
    for i in range(1040):
        write(staging / f"{i:05d}.txt", f"frame {i}")
    # Within one 1 s window: a folder of 1040 frames moved in, and 10 files written one by one.
    staging.rename(root / "frames")
    for i in range(10):
        write(root / f"loose-{i}.txt", f"loose {i}")
    wait_until(lambda: len(server_tree(api, owner, project_id)) == 1051, 60, "all frames", agent)
    events = all_events(api, owner, project_id, after)
    assert len(events) == 1050
    # One request per batch: a batch's events share one commit time.
    batches = collections.Counter(e["created_at"] for e in events)
    assert sorted(batches.values()) == [50, 1000]


def test_a_file_being_written_is_posted_once_it_settles(tmp_path: Path, api: Api, server, owner,
                                                        agents):
    root = tmp_path / "film"
    write(root / "ready.txt", "ready")
    agent = agents(root, server.url, owner, ["--debounce", "0.2", "--settle", "1.0"])
    project_id = agent.project_id()
    converge(api, owner, agent)
    target = root / "capture.mov"
    done = threading.Event()

    def writer() -> None:
        with open(target, "wb") as f:
            for _ in range(30):  # 3 s of a camera writing 64 KiB every 100 ms
                f.write(os.urandom(65536))
                f.flush()
                time.sleep(0.1)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        assert "capture.mov" not in server_tree(api, owner, project_id), "posted while written"
        time.sleep(0.1)
    thread.join()
    converge(api, owner, agent)
    events = [e for e in all_events(api, owner, project_id)
              if e["change"]["path"] == "capture.mov"]
    assert [(e["change"]["op"], e["change"]["size"]) for e in events] == [("create", 30 * 65536)]


def test_copy_and_rename_upload_nothing(tmp_path: Path, api: Api, server, owner, agents):
    root = tmp_path / "film"
    write(root / "a.mov", os.urandom(3_000_000))
    agent = agents(root, server.url, owner)
    converge(api, owner, agent)
    before = agent.status()["bytes_uploaded"]
    assert before == 3_000_000
    shutil.copyfile(root / "a.mov", root / "copy.mov")
    (root / "a.mov").rename(root / "renamed.mov")
    converge(api, owner, agent)
    assert agent.status()["bytes_uploaded"] == before


def test_edits_of_a_big_file_send_what_changed(tmp_path: Path, api: Api, server, owner, agents):
    """A 40 MiB file edited twice: each version reaches the server byte for byte with only its
    changed blocks sent; the agent and the server hash each edit from their saved SHA-256 states
    (content/resumable.py), which must give the file's real hash or the server refuses it. The
    agent's states outlive a restart (kept in its database)."""
    root = tmp_path / "film"
    size = 40 * 1024 * 1024
    write(root / "take.mov", os.urandom(size))
    agent = agents(root, server.url, owner)
    converge(api, owner, agent)
    sent = agent.status()["bytes_uploaded"]
    assert sent == size
    resumed = agent.status()["bytes_hash_resumed"]
    assert resumed == 0
    # States are kept every 8 MiB: the whole-file hash resumes at 24 MiB, then at 8 MiB; the
    # agent is restarted before the second edit, which finds the states saved in its database.
    for offset, resumes_at in ((30 * 1024 * 1024 + 7, 24), (9 * 1024 * 1024 + 100_000, 8)):
        with open(root / "take.mov", "r+b") as f:
            f.seek(offset)
            f.write(os.urandom(5000))
        converge(api, owner, agent)
        now = agent.status()["bytes_uploaded"]
        assert 0 < now - sent <= 2 * 128 * 1024  # one or two 128 KiB blocks, not the file
        sent = now
        assert agent.status()["bytes_hash_resumed"] - resumed == resumes_at * 1024 * 1024
        resumed = agent.status()["bytes_hash_resumed"]
        agent.stop()
        agent.start()
