"""Roles, authors and locks in the pages: invites with a role, the owner changing a member's role
(the member's open page says so at once), "by <author>" on activity and badges, and file locks
taken, shown live with their holder, and broken by the owner."""

from __future__ import annotations

import re

import pytest
from web_support import Api

expect = pytest.importorskip("playwright.sync_api").expect


def open_project(new_page, server, token: str, project_id: str):
    page = new_page(server.url, token)
    page.goto(f"/projects/{project_id}")
    expect(page.get_by_role("heading", name="Cut")).to_be_visible()
    expect(page.locator(".conn")).to_have_text(re.compile("Live"))
    return page


def row(page, path: str):
    return page.locator(f'.tree-row.file[data-path="{path}"]')


def join_as(api: Api, owner: str, project_id: str, name: str, role: str) -> tuple[str, dict]:
    token, user = api.register(name)
    code = api.call("POST", f"/api/projects/{project_id}/invites", owner,
                    {"role": role})["invite"]["code"]
    api.call("POST", "/api/projects/join", token, {"invite_code": code})
    return token, user


def test_roles_authors_and_locks(start_server, new_page, screenshot):
    server = start_server()
    api = Api(server.url)
    owner_token, _ = api.register("Olivia")
    project_id = api.project(owner_token, "Cut")
    api.post_files(owner_token, project_id, {"cut.prproj": b"v1" * 100, "notes.txt": b"hi"})
    ana_token, ana = join_as(api, owner_token, project_id, "Ana", "editor")
    vic_token, vic = join_as(api, owner_token, project_id, "Vic", "viewer")

    owner = open_project(new_page, server, owner_token, project_id)
    ana_page = open_project(new_page, server, ana_token, project_id)
    vic_page = open_project(new_page, server, vic_token, project_id)
    expect(ana_page.get_by_text("You are an editor")).to_be_visible()
    expect(vic_page.get_by_text("You are a viewer")).to_be_visible()

    # Invites carry a role.
    owner.get_by_label("Joins as").select_option("editor")
    owner.get_by_role("button", name="Create invite link").click()
    expect(owner.locator(".invite-meta").filter(has_text="0 uses")).to_contain_text("Editor")
    assert api.call("GET", f"/api/projects/{project_id}/invites",
                    owner_token)["invites"][-1]["role"] == "editor"

    # The owner makes Vic an editor: Vic's open page says so, at once.
    members = owner.locator(".member")
    expect(members.filter(has_text="Ana").locator("select")).to_have_value("editor")
    owner.get_by_label(f"Role of {vic['email']}").select_option("editor")
    expect(vic_page.get_by_role("status").filter(has_text="The owner made you an editor")
           ).to_be_visible()
    expect(vic_page.get_by_text("You are an editor")).to_be_visible()
    roles = {m["user_id"]: m["role"] for m in
             api.call("GET", f"/api/projects/{project_id}", owner_token)["members"]}
    assert roles[vic["id"]] == "editor"
    owner.get_by_label(f"Role of {vic['email']}").select_option("viewer")
    expect(vic_page.get_by_role("status").filter(has_text="no longer change")).to_be_visible()
    expect(vic_page.get_by_text("You are a viewer")).to_be_visible()

    # An editor's change: "by Ana" on the badge and on the activity line.
    api.post_changes(ana_token, project_id,
                     [api.change(ana_token, project_id, "audio/mix.wav", b"mix" * 50)])
    expect(owner.locator(".sync-badge")).to_have_text(re.compile(r"Synced: audio/mix\.wav by Ana"))
    expect(owner.locator(".feed-item").first).to_contain_text("by Ana")
    screenshot(owner, "project-roles")

    # Ana locks cut.prproj from her page; everyone sees who holds it, live.
    expect(vic_page.get_by_role("button", name="Lock cut.prproj")).to_have_count(0)
    ana_page.get_by_role("button", name="Lock cut.prproj").click()
    expect(row(ana_page, "cut.prproj").locator(".lock-badge")).to_have_text(re.compile("you"))
    for page in (owner, vic_page):
        expect(row(page, "cut.prproj").locator(".lock-badge")).to_have_text(re.compile("Ana"))
    expect(owner.get_by_role("button", name="Lock cut.prproj")).to_have_count(0)
    screenshot(owner, "project-locked")
    # A page opened now learns the lock from the subscription's snapshot.
    late = open_project(new_page, server, vic_token, project_id)
    expect(row(late, "cut.prproj").locator(".lock-badge")).to_have_text(re.compile("Ana"))

    # The owner breaks it; the badges go everywhere.
    owner.get_by_role("button", name="Break Ana's lock on cut.prproj").click()
    for page in (owner, ana_page, vic_page, late):
        expect(row(page, "cut.prproj").locator(".lock-badge")).to_have_count(0)
    assert api.call("GET", f"/api/projects/{project_id}/locks", owner_token)["locks"] == []
    expect(ana_page.get_by_role("button", name="Lock cut.prproj")).to_be_visible()


def test_conflict_copies_are_marked(start_server, new_page):
    """A conflict copy (the agents' `<stem> (conflict <who> <time>).<ext>`) carries a marker that
    names whose version it is; the original beside it, and a file that only looks alike, do not."""
    server = start_server()
    api = Api(server.url)
    owner_token, _ = api.register("Olivia")
    project_id = api.project(owner_token, "Cut")
    copy = "edit/cut (conflict Ana 2026-11-29 101500).prproj"
    api.post_files(owner_token, project_id, {
        "edit/cut.prproj": b"theirs", copy: b"mine", "edit/cut (conflict notes).txt": b"x"})
    page = open_project(new_page, server, owner_token, project_id)
    badge = row(page, copy).locator(".conflict-badge")
    expect(badge).to_have_text("conflict copy")
    expect(badge).to_have_attribute("title", re.compile(r"^Ana's version of cut\.prproj"))
    expect(row(page, "edit/cut.prproj")).to_be_visible()
    expect(row(page, "edit/cut.prproj").locator(".conflict-badge")).to_have_count(0)
    expect(row(page, "edit/cut (conflict notes).txt").locator(".conflict-badge")).to_have_count(0)
