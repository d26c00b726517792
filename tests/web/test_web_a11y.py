"""Automated accessibility checks (axe-core, WCAG 2 A and AA rules) of every page, wide and narrow.

axe finds what a machine can (names, labels, roles, contrast, landmarks); the keyboard paths are
exercised by the other tests (folders, forms, buttons are all reached by role and name)."""

from __future__ import annotations

from pathlib import Path

import pytest
from web_support import ROOT, SNAPSHOT, Api, sign_in

expect = pytest.importorskip("playwright.sync_api").expect

AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page) -> list[str]:
    # Evaluated over the DevTools protocol: a <script> tag would be refused by the page's CSP.
    page.evaluate(AXE.read_text() + "\n;undefined")
    result = page.evaluate(
        "() => axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
            for v in result["violations"]]


@pytest.mark.parametrize(("width", "scheme"), [(1280, "light"), (390, "dark")])
def test_pages_pass_axe(start_server, new_page, width, scheme):
    if not Path(AXE).is_file():
        pytest.skip("axe-core is not installed: npm ci in web/")
    server = start_server()
    api = Api(server.url)
    owner_token, _ = api.register("Olivia")
    project_id = api.project(owner_token, "Launch film", "Edit of the spring launch video")
    api.post_files(owner_token, project_id, SNAPSHOT)
    api.invite(owner_token, project_id)
    stranger_token, _ = api.register("Sam")
    code = api.invite(owner_token, project_id)

    page = new_page(server.url, width=width)
    page.emulate_media(color_scheme=scheme)
    checks = {}
    page.goto("/login")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    checks["login"] = axe_violations(page)
    page.goto("/signup")
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    checks["signup"] = axe_violations(page)

    sign_in(page, server.url, owner_token)
    page.goto("/")
    expect(page.get_by_role("link", name="Launch film")).to_be_visible()
    checks["projects"] = axe_violations(page)
    page.goto(f"/projects/{project_id}")
    expect(page.locator(".conn")).to_have_text("Live · WebSocket")
    expect(page.get_by_label("Invite link", exact=True).first).to_be_visible()
    api.post_files(owner_token, project_id, {"clips/new.mov": b"n"})
    expect(page.locator(".sync-badge")).to_be_visible()
    checks["project"] = axe_violations(page)

    sign_in(page, server.url, stranger_token)
    page.goto(f"/join/{code}")
    expect(page.get_by_role("button", name="Join project")).to_be_visible()
    checks["join"] = axe_violations(page)

    failing = {name: found for name, found in checks.items() if found}
    assert not failing, failing
