"""Version history in the browser: a file's versions with who made them and when, Restore, the
"Deleted files" list, and the storage the project uses. Real server, real Chromium."""

from __future__ import annotations

import re

import pytest
from web_support import Api

expect = pytest.importorskip("playwright.sync_api").expect


def test_versions_restore_and_deleted_files(start_server, new_page, screenshot):
    server = start_server()
    api = Api(server.url)
    owner_token, _ = api.register("Olivia")
    project_id = api.project(owner_token, "Launch film")
    versions = [b"a" * 1000, b"b" * 2000, b"c" * 3000]
    for i, data in enumerate(versions):
        api.post_changes(owner_token, project_id, [
            api.change(owner_token, project_id, "edit/cut.prproj", data, 1_764_000_000_000 + i)])
    api.post_files(owner_token, project_id, {"notes.txt": b"n" * 500})
    api.post_changes(owner_token, project_id, [
        api.change(owner_token, project_id, "edit/cut.prproj", None)])
    viewer_token, _ = api.viewer(owner_token, project_id)

    page = new_page(server.url, owner_token)
    page.goto(f"/projects/{project_id}")
    deleted = page.get_by_role("region", name="Deleted files")
    expect(deleted.locator("[data-path='edit/cut.prproj']")).to_be_visible()
    storage = page.get_by_role("region", name="Storage")
    expect(storage.locator("[data-usage='live']")).to_have_text("500 B")
    expect(storage.locator("[data-usage='history']")).to_have_text("5.9 KB")

    deleted.get_by_role("button", name="Versions").click()
    panel = page.get_by_role("region", name="Versions of edit/cut.prproj")
    expect(panel.locator("li.version")).to_have_count(4)
    expect(panel.locator("li.version").first).to_contain_text("Deleted by Olivia")
    expect(panel.locator("li.version").last).to_contain_text("Created by Olivia")
    screenshot(page, "versions")
    # The oldest version back: the tree shows it, the deleted list no longer has it.
    panel.locator("li.version").last.get_by_role("button", name=re.compile("^Restore")).click()
    expect(panel.get_by_role("status")).to_contain_text("Restored")
    expect(page.locator(".tree-row[data-path='edit/cut.prproj'] .tree-size")).to_have_text("1000 B")
    expect(deleted.get_by_text("No deleted files.")).to_be_visible()
    expect(panel.locator("li.version")).to_have_count(5)
    expect(panel.locator("li.version").first).to_contain_text("current")

    # A file's versions from its row in the tree; a viewer sees them but no Restore button.
    viewer_page = new_page(server.url, viewer_token)
    viewer_page.goto(f"/projects/{project_id}")
    viewer_page.get_by_role("button", name="Versions of edit/cut.prproj").click()
    viewer_panel = viewer_page.get_by_role("region", name="Versions of edit/cut.prproj")
    expect(viewer_panel.locator("li.version")).to_have_count(5)
    expect(viewer_panel.get_by_role("button", name=re.compile("^Restore"))).to_have_count(0)
