"""A large project's page loads its tree a folder at a time (``GET /files?dir=``): the top level
first, each folder when it is opened; a live change lands in an open folder, updates the totals of
a folder not loaded yet (which then loads), and a new folder is complete without a request."""

from __future__ import annotations

import re

import pytest
from web_support import Api

expect = pytest.importorskip("playwright.sync_api").expect

# Over the page's OPEN_ALL_MAX (2,000): the page does not fetch the whole snapshot.
DAYS = 2
CLIPS = 1_000
SHOT = 150


def folder_row(page, path: str):
    return page.locator(f'.tree-row.folder[data-path="{path}"]')


def file_row(page, path: str):
    return page.locator(f'.tree-row.file[data-path="{path}"]')


def test_large_project_loads_by_folder(start_server, new_page):
    server = start_server()
    api = Api(server.url)
    owner, _ = api.register("Olivia")
    project = api.project(owner, "Feature")
    clip = b"clip"
    for day in range(1, DAYS + 1):
        api.post_changes(owner, project, [
            api.change(owner, project, f"footage/day{day:02d}/clip_{i:04d}.mov", clip)
            for i in range(CLIPS)])
    api.post_changes(owner, project, [api.change(owner, project, f"renders/sh010/sh010.{i:04d}.exr", clip)
                                      for i in range(SHOT)])
    api.post_files(owner, project, {f"notes/{n}.txt": n.encode() * 10 for n in "abc"})
    viewer, _ = api.viewer(owner, project)
    total = DAYS * CLIPS + SHOT + 3

    page = new_page(server.url, viewer)
    listings: list[str] = []
    listing = re.compile(r"/api/projects/[^/]+/files(\?.*)?$")
    page.on("request", lambda r: (m := listing.search(r.url)) and listings.append(m[1] or ""))
    calls: list[str] = []  # the project's API, in order
    page.on("request", lambda r: f"/api/projects/{project}" in r.url and calls.append(
        r.url.split(project, 1)[1].split("?", 1)[0] or "project"))
    page.goto(f"/projects/{project}")
    expect(page.get_by_role("group", name=f"{total} files")).to_be_visible()
    expect(page.locator(".conn")).to_have_text("Live · WebSocket")
    expect(folder_row(page, "footage/")).to_contain_text(f"folder, {DAYS * CLIPS} files")
    expect(folder_row(page, "footage/").locator(".tree-name")).to_have_attribute("aria-expanded", "false")
    assert listings == ["?dir=%2F"], "the top level only, not the whole snapshot"
    # The listing goes first, alone: the project's answer (it counts the storage) and the
    # deleted files (a query over the whole log) come after it, once each.
    expect(page.get_by_role("heading", name="Feature")).to_be_visible()
    expect(page.get_by_role("heading", name="Deleted files")).to_be_visible()
    assert calls[0] == "/files" and sorted(calls[1:]) == ["/events", "/files/deleted", "project"], calls

    # Opening a folder fetches it: its folders with their totals, then a folder's files.
    folder_row(page, "renders/").locator(".tree-name").click()
    folder_row(page, "renders/sh010/").locator(".tree-name").click()
    expect(page.get_by_role("button", name=re.compile(r"^sh010\.\[0000-0149\]\.exr"))).to_contain_text(
        f"{SHOT} frames")
    folder_row(page, "footage/").locator(".tree-name").click()
    expect(folder_row(page, "footage/day01/")).to_contain_text(f"folder, {CLIPS} files")
    folder_row(page, "footage/day01/").locator(".tree-name").click()
    expect(file_row(page, "footage/day01/clip_0000.mov")).to_be_visible()
    assert listings[1:] == ["?dir=renders%2F", "?dir=renders%2Fsh010%2F", "?dir=footage%2F",
                            "?dir=footage%2Fday01%2F"]

    # A change in an open folder shows as a row.
    api.post_changes(owner, project, [api.change(owner, project, "footage/day01/a-new.mov", b"new!")])
    expect(file_row(page, "footage/day01/a-new.mov")).to_be_visible()
    folder_row(page, "footage/day01/").locator(".tree-name").click()  # the rest back in view
    # Changes inside folders not loaded: their totals (and those above) stay exact.
    api.post_changes(owner, project, [
        api.change(owner, project, "footage/day02/a-extra.mov", b"extra"),
        api.change(owner, project, "notes/d.txt", b"ddddd"),
        api.change(owner, project, "notes/a.txt", b"aaa"),
        api.change(owner, project, "notes/b.txt", None),
    ])
    expect(folder_row(page, "footage/day02/")).to_contain_text(f"folder, {CLIPS + 1} files")
    expect(folder_row(page, "footage/")).to_contain_text(f"folder, {DAYS * CLIPS + 2} files")
    expect(folder_row(page, "notes/")).to_contain_text("folder, 3 files")
    expect(folder_row(page, "notes/").locator(".tree-size")).to_have_text(f"{3 + 10 + 5} B")
    expect(page.get_by_role("group", name=f"{total + 2} files")).to_be_visible()
    folder_row(page, "notes/").locator(".tree-name").click()
    expect(file_row(page, "notes/a.txt").locator(".tree-size")).to_have_text("3 B")
    expect(file_row(page, "notes/b.txt")).to_have_count(0)
    expect(file_row(page, "notes/d.txt")).to_be_visible()
    folder_row(page, "footage/day02/").locator(".tree-name").click()
    expect(file_row(page, "footage/day02/a-extra.mov")).to_be_visible()
    folder_row(page, "footage/day02/").locator(".tree-name").click()

    # A folder new since the top level was listed holds what its events said: no request.
    before = len(listings)
    api.post_changes(owner, project, [api.change(owner, project, "music/theme.wav", b"la")])
    folder_row(page, "music/").locator(".tree-name").click()
    expect(file_row(page, "music/theme.wav")).to_be_visible()
    # Its last file deleted, a folder goes.
    api.post_changes(owner, project, [api.change(owner, project, "music/theme.wav", None)])
    expect(folder_row(page, "music/")).to_have_count(0)
    assert len(listings) == before
