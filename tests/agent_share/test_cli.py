"""``vidsync register``, ``login`` and ``invite`` as a user runs them; the periodic rescan."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import uuid
from pathlib import Path

from harness import ROOT, VIDSYNC, Api

from agent_share.helpers import converge


def vidsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIDSYNC_")}
    return subprocess.run([*VIDSYNC, *args], env={**clean, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_register_login_and_invite(tmp_path: Path, api: Api, server):
    config = tmp_path / "config"
    email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    env = {"VIDSYNC_CONFIG_DIR": str(config), "VIDSYNC_PASSWORD": "correct horse 1"}
    r = vidsync("register", "--server", server.url, "--email", email, env=env)
    assert r.returncode == 0, r.stderr
    saved = config / "config.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    assert "correct horse" not in saved.read_text()

    r = vidsync("login", "--server", server.url, "--email", email,
                env={**env, "VIDSYNC_PASSWORD": "wrong password"})
    assert r.returncode != 0 and "wrong email or password" in r.stderr
    r = vidsync("login", "--server", server.url, "--email", email, env=env)
    assert r.returncode == 0, r.stderr
    r = vidsync("login", "--server", server.url, "--email", email,
                env={"VIDSYNC_CONFIG_DIR": str(config)})
    assert r.returncode != 0 and "VIDSYNC_PASSWORD" in r.stderr  # no terminal, no password

    # invite with the stored login: a project id or a shared folder
    token = api.post("/api/auth/login", json={"email": email,
                                               "password": "correct horse 1"}).json()["token"]
    project_id = api.project(token)
    r = vidsync("invite", project_id, env={"VIDSYNC_CONFIG_DIR": str(config)})
    assert r.returncode == 0, r.stderr
    link = re.search(r"^link: (\S+)$", r.stdout, re.M).group(1)
    code = re.search(r"^code: (\S+)$", r.stdout, re.M).group(1)
    assert link == f"{server.url}/join/{code}"
    viewer = api.register("viewer")[0]
    joined = api.post("/api/projects/join", json={"invite_code": link}, token=viewer)
    assert joined.status_code == 200 and joined.json()["project"]["id"] == project_id

    # VIDSYNC_SERVER and VIDSYNC_TOKEN win over the file; a stranger's token is refused.
    stranger = api.register("stranger")[0]
    r = vidsync("invite", project_id, env={"VIDSYNC_CONFIG_DIR": str(config),
                                           "VIDSYNC_TOKEN": stranger})
    assert r.returncode != 0 and "not_found" in r.stderr
    r = vidsync("invite", project_id, env={"VIDSYNC_CONFIG_DIR": str(tmp_path / "none")})
    assert r.returncode != 0 and "not logged in" in r.stderr


def test_invite_for_a_shared_folder(tmp_path: Path, api: Api, server, owner, agents):
    root = tmp_path / "film"
    root.mkdir()
    (root / "a.txt").write_text("a")
    agent = agents(root, server.url, owner)
    project_id = agent.project_id()
    env = {"VIDSYNC_SERVER": server.url, "VIDSYNC_TOKEN": owner,
           "VIDSYNC_CONFIG_DIR": str(tmp_path / "none")}
    r = vidsync("invite", str(root), "--max-uses", "1", env=env)
    assert r.returncode == 0, r.stderr
    code = re.search(r"^code: (\S+)$", r.stdout, re.M).group(1)
    invites = api.get(f"/api/projects/{project_id}/invites", token=owner).json()["invites"]
    assert [(i["code"], i["max_uses"]) for i in invites] == [(code, 1)]
    # A second agent for the same folder is refused.
    r = vidsync("share", str(root), env=env)
    assert r.returncode != 0 and "already running" in r.stderr


def test_the_periodic_rescan_catches_what_the_watcher_missed(tmp_path: Path, api: Api, server,
                                                             owner, agents):
    root = tmp_path / "film"
    root.mkdir()
    (root / "a.txt").write_text("first")
    os.link(root / "a.txt", tmp_path / "outside-link")
    agent = agents(root, server.url, owner,
                   ["--debounce", "0.2", "--settle", "0.3", "--rescan-interval", "2"])
    converge(api, owner, agent)
    # Written through a hard link outside the folder: inotify reports nothing inside it.
    with open(tmp_path / "outside-link", "w") as f:
        f.write("changed behind the watcher's back")
    tree = converge(api, owner, agent, timeout=15)
    assert tree["a.txt"][1] == len("changed behind the watcher's back")


def test_a_revoked_token_stops_the_agent_with_a_hint(tmp_path: Path, api: Api, server, agents):
    token = api.register("owner")[0]
    root = tmp_path / "film"
    root.mkdir()
    (root / "a.txt").write_text("a")
    agent = agents(root, server.url, token)
    converge(api, token, agent)
    assert api.post("/api/auth/logout", token=token).status_code == 204
    (root / "b.txt").write_text("b")
    assert agent.proc.wait(20) != 0
    assert "vidsync login" in agent.log


def test_a_stopped_agent_exits_cleanly_without_errors(tmp_path: Path, api: Api, server, owner,
                                                      agents):
    """SIGTERM (what Ctrl-C and service managers send) ends the agent with status 0 and nothing
    logged at ERROR: the sending half finishes writing its state before the database closes."""
    root = tmp_path / "film"
    root.mkdir()
    (root / "a.txt").write_text("a")
    agent = agents(root, server.url, owner)
    converge(api, owner, agent)
    assert agent.stop() == 0
    assert "ERROR" not in agent.log and "Traceback" not in agent.log, agent.log[-3000:]
    assert agent.status().get("server_reachable") is None  # the cleanup's write landed
