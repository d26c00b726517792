"""The original design's end-to-end check, for real: files created in the owner's folder on disk
(watched by ``vidsync share``) appear as badges and rows in a collaborator's browser."""

from __future__ import annotations

import os
import time

import pytest
from test_web_live import WATCH_BADGES, row
from web_support import LATENCIES, ROOT, Api

from vidsync.testing import AgentProcess

expect = pytest.importorskip("playwright.sync_api").expect

LABEL = "file written in the owner's folder -> sync badge shown (vidsync share, defaults)"


def wait_for_project(api: Api, token: str, name: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in api.call("GET", "/api/projects", token)["projects"]:
            if p["name"] == name and p["last_seq"] >= 1:
                return p["id"]
        time.sleep(0.1)
    raise AssertionError(f"the share agent did not create {name!r} in {timeout} s")


def test_files_written_on_disk_show_their_badges(start_server, new_page, tmp_path):
    server = start_server()
    api = Api(server.url)
    owner_token, _ = api.register("Olivia")
    folder = tmp_path / "Launch film"
    folder.mkdir()
    (folder / "notes.txt").write_bytes(b"first cut\n")
    env = {**os.environ, "VIDSYNC_SERVER": server.url, "VIDSYNC_TOKEN": owner_token,
           "VIDSYNC_CONFIG_DIR": str(tmp_path / "config")}
    agent = AgentProcess(["share", str(folder), "--name", "Launch film"], env=env,
                         log_path=tmp_path / "share.log", cwd=ROOT).start()
    try:
        project_id = wait_for_project(api, owner_token, "Launch film")
        viewer_token, _ = api.viewer(owner_token, project_id)
        page = new_page(server.url, viewer_token)
        page.goto(f"/projects/{project_id}")
        expect(page.get_by_role("heading", name="Launch film")).to_be_visible()
        expect(row(page, "notes.txt")).to_be_visible()
        page.evaluate(WATCH_BADGES)

        latencies = []
        (folder / "footage").mkdir()
        for i in range(8):
            path = f"footage/clip-{i:02d}.mov"
            start_ms = time.time() * 1000
            (folder / path).write_bytes(os.urandom(256 * 1024))
            key = f"Synced: {path}"
            page.wait_for_function("key => key in window.badgeShownAt", arg=key, timeout=15_000)
            latencies.append(page.evaluate("key => window.badgeShownAt[key]", key) - start_ms)
            expect(row(page, path)).to_be_visible()
        LATENCIES.setdefault(LABEL, []).extend(latencies)
        print(f"write-to-badge (ms): {[round(x) for x in latencies]}")

        # A deletion on disk removes the row.
        (folder / "notes.txt").unlink()
        expect(row(page, "notes.txt")).to_have_count(0)
    finally:
        code = agent.stop()
    assert code == 0, agent.log[-2000:]
