"""Sign up, create a project, invite, and a second browser joining: all through the pages."""

from __future__ import annotations

import re
import uuid

import pytest
from web_support import PASSWORD, Api

expect = pytest.importorskip("playwright.sync_api").expect


def sign_up(page, name: str, email: str) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()


def test_sign_up_create_project_invite_and_join(start_server, new_page, screenshot):
    server = start_server()
    owner_email = f"olivia-{uuid.uuid4().hex[:6]}@example.com"
    viewer_email = f"victor-{uuid.uuid4().hex[:6]}@example.com"

    # The owner arrives logged out, is sent to log in, and signs up instead.
    owner = new_page(server.url)
    owner.goto("/")
    expect(owner).to_have_url(re.compile(r"/login$"))
    expect(owner.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(owner, "login")
    owner.get_by_role("link", name="Create an account").click()
    sign_up(owner, "Olivia", owner_email)
    expect(owner.get_by_role("heading", name="Projects")).to_be_visible()
    expect(owner.get_by_text("You have no projects yet")).to_be_visible()

    owner.get_by_label("Name").fill("Launch film")
    owner.get_by_label("Description").fill("Edit of the spring launch video")
    owner.get_by_role("button", name="Create project").click()
    expect(owner.get_by_role("heading", name="Launch film")).to_be_visible()
    expect(owner).to_have_url(re.compile(r"/projects/[0-9a-f-]{36}$"))
    project_id = owner.url.rsplit("/", 1)[1]
    expect(owner.locator(".conn")).to_have_text(re.compile("Live · WebSocket"))
    expect(owner.get_by_role("status").filter(has_text="Live")).to_be_visible()

    # An invite link, as the owner would copy it.
    owner.get_by_label("Maximum uses").fill("3")
    owner.get_by_role("button", name="Create invite link").click()
    link_box = owner.get_by_label("Invite link", exact=True)
    expect(link_box).to_have_value(re.compile(rf"^{re.escape(server.url)}/join/[\w-]+$"))
    invite_link = link_box.input_value()
    expect(owner.locator(".invite-meta")).to_contain_text("0 / 3 uses")

    # The collaborator opens it in another browser with no account: sign up, then join.
    viewer = new_page(server.url)
    viewer.goto(invite_link)
    expect(viewer).to_have_url(re.compile(r"/signup\?next=%2Fjoin%2F"))
    expect(viewer.get_by_text("Sign up to join the project you were invited to.")).to_be_visible()
    sign_up(viewer, "Victor", viewer_email)
    expect(viewer.get_by_role("heading", name="Join a project")).to_be_visible()
    expect(viewer.get_by_text(f"You will join as {viewer_email}")).to_be_visible()
    screenshot(viewer, "join")
    viewer.get_by_role("button", name="Join project").click()
    expect(viewer.get_by_role("heading", name="Launch film")).to_be_visible()
    expect(viewer).to_have_url(re.compile(rf"/projects/{project_id}$"))
    expect(viewer.locator(".conn")).to_have_text(re.compile("Live · WebSocket"))
    expect(viewer.get_by_text("You are a viewer")).to_be_visible()
    # Viewers see who is in the project but cannot manage it.
    expect(viewer.get_by_role("heading", name="Members (2)")).to_be_visible()
    expect(viewer.get_by_role("button", name=re.compile("^Remove"))).to_have_count(0)
    expect(viewer.get_by_role("heading", name="Invite links")).to_have_count(0)

    # Both see the project in their list, with its member count.
    viewer.get_by_role("link", name="Projects").click()
    row = viewer.get_by_role("row", name=re.compile("Launch film"))
    expect(row.get_by_role("cell").nth(0)).to_have_text("Viewer")
    expect(row.get_by_role("cell").nth(1)).to_have_text("2")

    owner.reload()
    expect(owner.get_by_role("heading", name="Members (2)")).to_be_visible()
    expect(owner.locator(".invite-meta")).to_contain_text("1 / 3 uses")
    expect(owner.get_by_role("button", name=f"Remove {viewer_email}")).to_be_visible()

    # Some files, so the screenshots show a project at work.
    api = Api(server.url)
    token = api.call("POST", "/api/auth/login", body={"email": owner_email,
                                                       "password": PASSWORD})["token"]
    api.post_files(token, project_id, {
        "edit/launch-v3.prproj": b"p" * 48_213,
        "footage/a-cam/A001_C004.mov": b"m" * 2_400_000,
        "footage/a-cam/A001_C005.mov": b"m" * 1_800_000,
        "footage/b-cam/B001_C002.mov": b"m" * 3_100_000,
        "audio/interview-mix.wav": b"w" * 940_000,
        "notes.md": b"# Notes\n",
    })
    expect(owner.locator('.tree-row[data-path="notes.md"]')).to_be_visible()
    screenshot(owner, "project-owner")
    owner.get_by_role("link", name="Projects").click()
    expect(owner.get_by_role("row", name=re.compile("Launch film"))).to_be_visible()
    screenshot(owner, "projects")

    # An owner can revoke a link; logging out revokes the token and shows the login page.
    owner.get_by_role("link", name="Launch film").click()
    owner.get_by_role("button", name=re.compile("^Revoke invite link")).click()
    expect(owner.get_by_text("No active invite links.")).to_be_visible()
    latecomer = new_page(server.url, api.register("Lena")[0])
    latecomer.goto(invite_link)
    latecomer.get_by_role("button", name="Join project").click()
    expect(latecomer.get_by_role("alert")).to_have_text("this invite was revoked")
    owner.get_by_role("button", name="Log out").click()
    expect(owner).to_have_url(re.compile(r"/login$"))
    assert not [c for c in owner.context.cookies() if c["name"] == "vidsync_session"]
