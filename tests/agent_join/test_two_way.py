"""Several writers on one project, each with a real agent on a real folder: the owner's
``vidsync share``, editors' ``vidsync join`` (both ways) and a viewer's mirror. Whatever they do at
the same time, every folder ends up with the same tree, and no version anyone wrote last is lost.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from pathlib import Path

import pytest
from agent_share.helpers import Agent as ShareAgent
from harness import Api, all_events

from agent_join.helpers import Agent, tree, wait_until

SEND = ["--debounce", "0.2", "--settle", "0.3"]
COPY = re.compile(r"^(?P<stem>.*) \(conflict (?P<who>.+) \d{4}-\d{2}-\d{2} \d{6}\)(?: \d+)?"
                  r"(?P<ext>\.[^./ ]*)?$")
# How long the random mix runs (the issue says a minute; the suite keeps it shorter).
MIX_SECONDS = float(os.environ.get("VIDSYNC_TEST_MIX_SECONDS", "30"))


class Team:
    """An owner sharing a folder, and members joined with invites of a given role."""

    def __init__(self, server, api: Api, tmp_path: Path) -> None:
        self.server, self.api, self.tmp = server, api, tmp_path
        self.owner_token, _ = api.register("Olga")
        self.owner = ShareAgent(tmp_path / "owner", server.url, self.owner_token,
                                tmp_path / "owner-config", SEND + ["--rescan-interval", "60"])
        self.owner.root.mkdir()
        self.agents: list[ShareAgent | Agent] = [self.owner]

    def start(self) -> Team:
        self.owner.start()
        self.project_id = self.owner.project_id()
        return self

    def invite(self, role: str) -> str:
        r = self.api.post(f"/api/projects/{self.project_id}/invites", json={"role": role},
                          token=self.owner_token)
        assert r.status_code == 201, r.text
        return r.json()["invite"]["code"]

    def member(self, name: str, role: str = "editor", *extra: str) -> Agent:
        token, user = self.api.register(name)
        home = self.tmp / f"{name}-home"
        home.mkdir()
        agent = Agent(self.server, token, self.tmp / name, home)
        agent.user = user
        agent.start(self.invite(role), *(SEND if role == "editor" else ()), *extra)
        self.agents.append(agent)
        return agent

    def folders(self) -> list[Path]:
        return [a.root if isinstance(a, ShareAgent) else a.mirror for a in self.agents]

    def converged(self, timeout: float = 60) -> dict[str, bytes]:
        """Wait until every folder holds the same files, byte for byte (and stays so for a
        moment: nothing is still on its way); that tree."""
        last: list[dict] = []

        def same() -> bool:
            nonlocal last
            last = [tree(f) for f in self.folders()]
            return all(t == last[0] for t in last)

        deadline = time.monotonic() + timeout
        while True:
            try:
                wait_until(same, max(1.0, deadline - time.monotonic()), "every folder to match")
                time.sleep(1.5)
                if same():
                    return last[0]
            except AssertionError:
                diffs = {str(f): sorted(p for p in set(t) | set(last[0]) if t.get(p) != last[0].get(p))
                         for f, t in zip(self.folders(), last, strict=True)}
                logs = "\n".join(f"--- {a}\n{a.log[-2500:]}" for a in self.agents)
                raise AssertionError(f"folders differ from the first one at {diffs}\n{logs}") from None
            if time.monotonic() > deadline:
                raise AssertionError("folders kept changing")

    def stop(self) -> None:
        for a in self.agents:
            a.kill()


@pytest.fixture
def team(server, api, tmp_path):
    made = Team(server, api, tmp_path)
    yield made
    made.stop()


def write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def copies(files: dict[str, bytes]) -> dict[str, bytes]:
    return {p: d for p, d in files.items() if COPY.match(p.rsplit("/", 1)[-1])}


def test_both_ways_without_echo(team, api):
    """An editor's folder sends like the owner's; a file written by an agent from the server is
    never posted back; a viewer's mirror only receives."""
    write(team.owner.root, "cut.prproj", b"owner's first cut")
    team.start()
    ana = team.member("Ana")
    viewer = team.member("Vic", "viewer")
    assert team.converged()["cut.prproj"] == b"owner's first cut"

    write(ana.mirror, "audio/mix.wav", b"ana's mix")
    write(ana.mirror, "cut.prproj", b"ana's second cut")
    files = team.converged()
    assert files == {"cut.prproj": b"ana's second cut", "audio/mix.wav": b"ana's mix"}

    write(viewer.mirror, "viewer-note.txt", b"not sent")  # a viewer's local edit stays local
    os.rename(ana.mirror / "audio/mix.wav", ana.mirror / "audio/final mix.wav")
    wait_until(lambda: (team.owner.root / "audio/final mix.wav").exists(), 20, "the rename")
    time.sleep(2)  # time enough for an echo, were there one
    events = all_events(api, team.owner_token, team.project_id)
    ops = [(e["change"]["op"], e["change"]["path"], e["author"]["name"]) for e in events]
    # Each change once, by whoever made it (a batch may order a rename's create and delete
    # either way): nothing written by an agent from the server came back.
    assert sorted(ops) == sorted([
        ("create", "cut.prproj", "Olga"), ("create", "audio/mix.wav", "Ana"),
        ("update", "cut.prproj", "Ana"), ("create", "audio/final mix.wav", "Ana"),
        ("delete", "audio/mix.wav", "Ana")]), ops
    assert (viewer.mirror / "viewer-note.txt").exists()
    assert not (team.owner.root / "viewer-note.txt").exists()
    status = ana.run("status", str(ana.mirror)).stdout
    assert "two-way" in status and "queued uploads:    0" in status, status


def test_three_writers_on_one_file_keep_every_version(team):
    """The owner and two editors save the same file within one debounce window: every folder
    ends up with the same tree, one version at the path and the others as conflict copies."""
    write(team.owner.root, "edit.prproj", b"v0")
    team.start()
    ana, ben = team.member("Ana"), team.member("Ben")
    viewer = team.member("Vic", "viewer")
    team.converged()

    versions = {b"olga's v1": team.owner.root, b"ana's v1": ana.mirror, b"ben's v1": ben.mirror}
    for data, root in versions.items():
        write(root, "edit.prproj", data)
    files = team.converged()
    assert set(files.values()) == set(versions), files
    made = copies(files)
    assert len(made) == 2 and "edit.prproj" in files, files
    for path in made:
        m = COPY.match(path)
        assert m["stem"] == "edit" and m["ext"] == ".prproj"
        assert files[path] == {"Olga": b"olga's v1", "Ana": b"ana's v1", "Ben": b"ben's v1"}[m["who"]]
    for agent in (ana, viewer):  # status lists them, on any member's folder
        out = agent.run("status", str(agent.mirror)).stdout
        assert "conflict copies:   2" in out and all(p in out for p in made), out


def test_a_modification_beats_a_concurrent_delete(team):
    write(team.owner.root, "notes.txt", b"v0")
    write(team.owner.root, "keep.txt", b"k0")
    team.start()
    ana, ben = team.member("Ana"), team.member("Ben")
    team.converged()

    (ana.mirror / "notes.txt").unlink()
    write(ben.mirror, "notes.txt", b"ben's edit")
    (team.owner.root / "keep.txt").unlink()  # and an uncontested delete goes through
    files = team.converged()
    assert files == {"notes.txt": b"ben's edit"}


def test_a_random_mix_of_three_writers_converges_and_loses_nothing(team):
    """Three writers create, edit, rename and delete for a while (``VIDSYNC_TEST_MIX_SECONDS``).
    Each edits the shared files and owns a folder of its own, where it alone renames and
    deletes. Afterwards every folder and a viewer's mirror hold the same tree, and every
    version that was the last one a writer wrote to a path is somewhere in it, unless another
    writer replaced it knowingly (that writer's folder held it when they saved over it: an
    ordinary edit, not a loss)."""
    shared = [f"shared/{n}.txt" for n in range(5)]
    for path in shared:
        write(team.owner.root, path, f"seed {path}".encode())
    team.start()
    writers = {"owner": team.owner.root, "ana": team.member("Ana").mirror,
               "ben": team.member("Ben").mirror}
    team.member("Vic", "viewer")
    team.converged()

    rng = random.Random(os.environ.get("VIDSYNC_TEST_SEED", "8"))
    last: dict[tuple[str, str], str | None] = {}  # (writer, path) -> hash of its last write
    replaced: set[str] = set()  # versions a writer saved over while holding them
    own: dict[str, list[str]] = {w: [] for w in writers}
    counter = 0
    deadline = time.monotonic() + MIX_SECONDS
    while time.monotonic() < deadline:
        w = rng.choice(list(writers))
        root = writers[w]
        counter += 1
        data = f"{w} write {counter} {rng.random()}".encode()
        action = rng.choice(["edit-shared", "edit-shared", "create", "edit-own", "rename", "delete"])
        if action == "edit-shared":
            path = rng.choice(shared)
        elif action == "create" or not own[w]:
            path = f"{w}/file{counter}.bin"
            own[w].append(path)
        else:
            path = rng.choice(own[w])
            if action == "rename":
                new = f"{w}/renamed{counter}.bin"
                if (root / path).exists():
                    os.rename(root / path, root / new)
                    last[(w, new)] = last.pop((w, path), None)
                    own[w][own[w].index(path)] = new
                continue
            if action == "delete":
                if (root / path).exists():
                    (root / path).unlink()
                own[w].remove(path)
                last[(w, path)] = None
                continue
        try:
            replaced.add(hashlib.sha256((root / path).read_bytes()).hexdigest())
        except FileNotFoundError:
            pass
        write(root, path, data)
        last[(w, path)] = hashlib.sha256(data).hexdigest()
        time.sleep(rng.uniform(0.02, 0.3))

    files = team.converged(timeout=120)
    present = {hashlib.sha256(d).hexdigest() for d in files.values()}
    lost = {k: v for k, v in last.items() if v is not None and v not in present | replaced}
    assert not lost, f"versions lost: {lost}"
    assert counter > 20 and copies(files), "the mix made no conflict: it tested too little"
