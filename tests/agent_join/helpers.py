"""Helpers for the join agent's tests: an owner that publishes a folder through the SDK, the join
agent as a real ``vidsync join`` process, and byte-for-byte comparison of two folders."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from agent_share.helpers import Agent as ShareAgent
from harness import ROOT, VIDSYNC, AgentProcess, Api, ServerProcess

from vidsync.client import Client
from vidsync.content.batches import pack

RESERVED = ".vidsync"


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (``.vidsync/`` aside) with its content. A file an agent moves
    away while this reads is left out: callers poll until two trees agree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != RESERVED]
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            try:
                out[rel] = (Path(dirpath) / name).read_bytes()
            except FileNotFoundError:
                continue
    return out


def wait_until(predicate: Callable[[], object], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_mirrors(src: Path, mirror: Path, timeout: float = 15) -> None:
    """Wait until ``mirror`` holds exactly the files of ``src``, byte for byte."""
    try:
        wait_until(lambda: tree(src) == tree(mirror), timeout, "the mirror to match")
    except AssertionError:
        want, got = tree(src), tree(mirror)
        diff = sorted(p for p in set(want) | set(got) if want.get(p) != got.get(p))
        raise AssertionError(f"mirror differs from source at {diff[:10]}") from None


class Owner:
    """The owner's side without the share agent: publishes what changed in ``src`` through the
    SDK (content first, then the changes), as a share agent would."""

    def __init__(self, server: ServerProcess, api: Api, src: Path) -> None:
        self.server = server
        self.api = api
        self.token, self.user = api.register("owner")
        self.project_id = api.project(self.token)
        self.src = src
        src.mkdir(parents=True, exist_ok=True)
        self.published: dict[str, str] = {}

    def invite(self) -> str:
        r = self.api.post(f"/api/projects/{self.project_id}/invites", json={}, token=self.token)
        return r.json()["invite"]["code"]

    def write(self, rel: str, data: bytes) -> None:
        path = self.src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def remove(self, rel: str) -> None:
        (self.src / rel).unlink()
        parent = (self.src / rel).parent
        while parent != self.src and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def publish(self) -> int:
        """Send what changed since the last publish; returns the log's last seq."""
        return asyncio.run(self._publish())

    async def _publish(self) -> int:
        current = {p: d for p, d in tree(self.src).items()}
        changes = []
        async with Client(self.server.url, self.token) as client:
            for path in sorted(current):
                result = await client.upload_file(self.project_id, self.src / path)
                if self.published.get(path) != result.hash:
                    op = "update" if path in self.published else "create"
                    changes.append({"path": path, "op": op, "hash": result.hash,
                                    "size": result.size, "mtime": int(time.time() * 1000)})
                    self.published[path] = result.hash
            for path in sorted(set(self.published) - set(current)):
                changes.append({"path": path, "op": "delete", "hash": None, "size": None,
                                "mtime": None})
                del self.published[path]
            if not changes:
                return -1
            return (await client.post_changes(self.project_id, changes))["last_seq"]


async def publish_small(url: str, token: str, project_id: str, files: dict[str, bytes]) -> None:
    """Publish small files as a share agent does: content in batches, then the changes."""
    async with Client(url, token) as c:
        content = [(hashlib.sha256(d).hexdigest(), d) for d in files.values()]
        for batch in pack((f, len(f[1])) for f in content):
            await c.put_small_files(project_id, batch)
        changes = [{"path": p, "op": "create", "hash": hashlib.sha256(d).hexdigest(),
                    "size": len(d), "mtime": int(time.time() * 1000)} for p, d in files.items()]
        for i in range(0, len(changes), 1000):
            await c.post_changes(project_id, changes[i:i + 1000])


class Agent:
    """A real ``vidsync join`` process for one viewer."""

    def __init__(self, server: ServerProcess, token: str, mirror: Path, home: Path) -> None:
        self.server = server
        self.token = token
        self.mirror = mirror
        self.home = home
        self.process: AgentProcess | None = None
        self.log_path = home / "join.log"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "VIDSYNC_SERVER": self.server.url, "VIDSYNC_TOKEN": self.token,
                "VIDSYNC_CONFIG_DIR": str(self.home / "config"), "PYTHONPATH": str(ROOT / "src")}

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.process.proc if self.process else None

    def start(self, invite: str | None = None, *extra: str) -> Agent:
        where = [invite, str(self.mirror)] if invite else [str(self.mirror)]
        # '--' before the positionals: an invite code may start with '-'.
        self.process = AgentProcess(["join", *extra, "--", *where], env=self.env,
                                    log_path=self.log_path, cwd=ROOT).start()
        return self

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Another ``vidsync`` command with this viewer's credentials."""
        return subprocess.run([*VIDSYNC, *args], env=self.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)

    def kill(self) -> None:
        if self.process:
            self.process.kill()

    def stop(self) -> int | None:
        return self.process.stop() if self.process else None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def viewer_token(api: Api) -> str:
    return api.register("viewer")[0]


# -- several writers: the owner's share agent, editors' and viewers' join agents --------------------

SEND = ["--debounce", "0.2", "--settle", "0.3"]
COPY = re.compile(r"^(?P<stem>.*) \(conflict (?P<who>.+) \d{4}-\d{2}-\d{2} \d{6}\)(?: \d+)?"
                  r"(?P<ext>\.[^./ ]*)?$")


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


def write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def copies(files: dict[str, bytes]) -> dict[str, bytes]:
    return {p: d for p, d in files.items() if COPY.match(p.rsplit("/", 1)[-1])}
