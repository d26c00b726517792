"""Helpers for the owner agent's tests: run ``vidsync share`` as a real process, compare trees."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import ROOT, VIDSYNC, AgentProcess, Api, all_events  # noqa: F401 - re-exported

from vidsync.agent.share import share_status

# Fast enough for tests, slow enough to be the real thing (debounce, settle, rescan all active).
FAST = ["--debounce", "0.2", "--settle", "0.4", "--rescan-interval", "60"]


class Agent:
    """``vidsync share DIR`` as a subprocess, configured only through the environment."""

    def __init__(self, root: Path, server_url: str, token: str, config_dir: Path,
                 args: list[str] | None = None) -> None:
        self.root = root
        self.env = {**os.environ, "VIDSYNC_SERVER": server_url, "VIDSYNC_TOKEN": token,
                    "VIDSYNC_CONFIG_DIR": str(config_dir), "VIDSYNC_LOG_LEVEL": "debug"}
        self.args = FAST if args is None else args
        self.process: AgentProcess | None = None
        self.log_path = root.parent / f"{root.name}-agent.log"

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.process.proc if self.process else None

    def start(self) -> Agent:
        self.process = AgentProcess(["share", str(self.root), *self.args], env=self.env,
                                    log_path=self.log_path, cwd=ROOT).start()
        return self

    def kill(self) -> None:
        if self.process:
            self.process.kill()

    def stop(self) -> int | None:
        return self.process.stop() if self.process else None

    def status(self) -> dict:
        return share_status(self.root) or {}

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def project_id(self, timeout: float = 15) -> str:
        return wait_until(lambda: self.status().get("project_id"), timeout, "the project",
                          self)


def wait_until(pred: Callable[[], Any], timeout: float = 20, what: str = "condition",
               agent: Agent | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if agent and agent.proc and agent.proc.poll() is not None:
            raise AssertionError(f"the agent exited ({agent.proc.returncode}):\n{agent.log[-3000:]}")
        if time.monotonic() > deadline:
            tail = agent.log[-3000:] if agent else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.1)


_hashes: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, remembered by its stat so polling a big tree stays cheap."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _hashes:
        return _hashes[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    _hashes[key] = h.hexdigest()
    return _hashes[key]


def local_tree(root: Path, skip: Callable[[str], bool] = lambda p: False) -> dict[str, tuple]:
    """{NFC path: (sha256, size)} of the regular files under ``root``, as the server should list
    them (without ``.vidsync/``, ``.vidsyncignore`` and whatever ``skip`` says)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".vidsync"]
        for name in filenames:
            full = Path(dirpath) / name
            rel = unicodedata.normalize("NFC", os.path.relpath(full, root).replace(os.sep, "/"))
            if full.is_symlink() or rel == ".vidsyncignore" or skip(rel):
                continue
            out[rel] = (sha256_file(full), full.stat().st_size)
    return out


def server_tree(api: Api, token: str, project_id: str) -> dict[str, tuple]:
    r = api.get(f"/api/projects/{project_id}/files", token=token)
    assert r.status_code == 200, r.text
    return {f["path"]: (f["hash"], f["size"]) for f in r.json()["files"]}


def assert_no_duplicates(events: list[dict]) -> None:
    """No change was posted twice: each (path, op, hash) appears once (the tests never recreate a
    path with the same content)."""
    keys = [(e["change"]["path"], e["change"]["op"], e["change"]["hash"]) for e in events]
    dups = {k for k in keys if keys.count(k) > 1}
    assert not dups, f"posted twice: {dups}"


def converge(api: Api, token: str, agent: Agent, timeout: float = 30,
             skip: Callable[[str], bool] = lambda p: False) -> dict[str, tuple]:
    """Wait until the server lists exactly the folder's files, then check every file's stored
    content byte for byte (streamed and hashed for big files)."""
    project_id = agent.project_id()
    want: dict[str, tuple] = {}

    def same() -> bool:
        nonlocal want
        want = local_tree(agent.root, skip)
        return server_tree(api, token, project_id) == want

    try:
        wait_until(same, timeout, "the server to match the folder", agent)
    except AssertionError:
        have = server_tree(api, token, project_id)
        diff = {p: (want.get(p), have.get(p)) for p in set(want) | set(have)
                if want.get(p) != have.get(p)}
        raise AssertionError(f"differences (local, server): {diff}\n{agent.log[-3000:]}") from None
    for path, (digest, size) in want.items():
        h = hashlib.sha256()
        n = 0
        with api.http.stream("GET", f"/api/projects/{project_id}/content/{digest}",
                             headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status_code == 200, (path, r.status_code)
            for chunk in r.iter_bytes(1 << 20):
                h.update(chunk)
                n += len(chunk)
        assert (h.hexdigest(), n) == (digest, size), path
        local = agent.root / path
        if local.exists():  # an NFD name on disk is compared through its hash above
            assert sha256_file(local) == digest, path
    return want
