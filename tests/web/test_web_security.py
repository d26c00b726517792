"""The web UI under its Content-Security-Policy, in Chromium, with its session in an HttpOnly
cookie: logging in, opening a project and following live events all work, no CSP violation or
console error occurs, and no script in the page can read the session. (Every browser test's page
fails on a CSP violation: see ``new_page`` in conftest.py.)"""

from __future__ import annotations

import re

import pytest
from web_support import PASSWORD, SNAPSHOT, Api

expect = pytest.importorskip("playwright.sync_api").expect

def test_the_app_works_under_its_csp_with_an_unreadable_session(start_server, new_page) -> None:
    server = start_server()
    api = Api(server.url)
    owner_token, owner = api.register("Olivia")
    project_id = api.project(owner_token, "Launch film")
    api.post_files(owner_token, project_id, SNAPSHOT)

    page = new_page(server.url)
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    response = page.goto("/login")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_label("Email").fill(owner["email"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Launch film").click()
    expect(page.get_by_role("heading", name="Launch film")).to_be_visible()
    expect(page.locator(".conn")).to_have_text("Live · WebSocket")
    # A live event arrives over the cookie-authenticated socket.
    api.post_files(owner_token, project_id, {"clips/new.mov": b"n" * 1000})
    expect(page.locator('.tree-row[data-path="clips/new.mov"]')).to_be_visible()
    # A reload keeps the session (the cookie), with nothing in storage.
    page.reload()
    expect(page.locator(".conn")).to_have_text("Live · WebSocket")

    # The session is the HttpOnly cookie: invisible to scripts, absent from storage.
    [cookie] = [c for c in page.context.cookies() if c["name"] == "vidsync_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "vidsync_session" not in page.evaluate("document.cookie")
    stored = page.evaluate("JSON.stringify({...localStorage, ...sessionStorage})")
    assert cookie["value"] not in stored and owner_token not in stored

    # The policy is enforced: an injected inline script does not run, and is reported.
    page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.injected = true'; document.body.appendChild(s); }""")
    violations = page.csp_violations
    for _ in range(100):  # the report comes back through the DevTools protocol
        if violations:
            break
        page.wait_for_timeout(50)
    assert page.evaluate("window.injected") is None
    assert len(violations) == 1 and violations[0].startswith("script-src"), violations
    violations.clear()  # provoked on purpose
    problems = [p for p in problems if "Content Security Policy" not in p or "inline" not in p]
    assert not problems, problems

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == "vidsync_session"]


def test_a_page_without_violations_over_long_polling(start_server, new_page) -> None:
    """With WebSocket refused, Socket.IO's polling requests carry the cookie too."""
    server = start_server("--no-websocket")
    api = Api(server.url)
    owner_token, _ = api.register("Olivia")
    project_id = api.project(owner_token, "Launch film")
    page = new_page(server.url, owner_token)
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.goto(f"/projects/{project_id}")
    expect(page.locator(".conn")).to_have_text(re.compile("^Live · long-polling"))
    api.post_files(owner_token, project_id, {"a.txt": b"a"})
    expect(page.locator('.tree-row[data-path="a.txt"]')).to_be_visible()
    assert page.csp_violations == []
    # The console reports the refused WebSocket; nothing else.
    assert not [p for p in problems if "WebSocket" not in p], problems
