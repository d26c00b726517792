"""The web UI's session cookie and the headers that keep the page safe in a browser.

Requests here carry the headers a browser would (Origin, Sec-Fetch-Site, the cookie), from a real
HTTP client against a real server.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from harness import Api

from server.helpers import assert_error

PASSWORD = "correct horse 1"


@pytest.fixture
def browser(server) -> httpx.Client:
    """A client that sends what the web UI's fetches send from the server's own page."""
    with httpx.Client(base_url=server.url, timeout=30, headers={
            "Origin": server.url, "X-Requested-With": "vidsync-web"}) as client:
        yield client


def _register_with_cookie(client: httpx.Client) -> tuple[httpx.Response, str]:
    email = f"cookie-{uuid.uuid4().hex[:10]}@example.com"
    r = client.post("/api/auth/register", json={"email": email, "password": PASSWORD,
                                               "cookie": True})
    return r, email


def test_login_with_cookie_sets_an_httponly_strict_cookie_and_no_token(server, browser) -> None:
    r, email = _register_with_cookie(browser)
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"user"}  # the token is nowhere a script could read it
    set_cookie = r.headers["Set-Cookie"]
    assert set_cookie.startswith("vidsync_session=")
    attributes = {a.strip().split("=")[0].lower() for a in set_cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "samesite=strict" in set_cookie.lower() and "secure" not in attributes  # plain http

    browser.cookies.clear()
    r = browser.post("/api/auth/login", json={"email": email, "password": PASSWORD, "cookie": True})
    assert r.status_code == 200 and set(r.json()) == {"user"}
    token = r.cookies["vidsync_session"]
    # The cookie is a token like any other: a bearer client may use it too.
    assert Api(server.url).get("/api/auth/me", token=token).status_code == 200
    # Over https (a TLS-ending proxy says so) the cookie is Secure as well.
    r = browser.post("/api/auth/login", json={"email": email, "password": PASSWORD, "cookie": True},
                     headers={"X-Forwarded-Proto": "https"})
    assert "; secure" in r.headers["Set-Cookie"].lower()


def test_the_cookie_counts_only_on_same_origin_requests(server, browser) -> None:
    r, _ = _register_with_cookie(browser)
    assert r.status_code == 201
    cookie = {"vidsync_session": browser.cookies["vidsync_session"]}
    bare = httpx.Client(base_url=server.url, timeout=30, cookies=cookie)
    # A same-origin fetch (GET: Sec-Fetch-Site, no Origin) and the UI's own POST work.
    assert bare.get("/api/auth/me", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert browser.get("/api/auth/me").status_code == 200
    r = browser.post("/api/projects", json={"name": "cookie project"})
    assert r.status_code == 201, r.text
    project_id = r.json()["project"]["id"]
    # Another site's page (or another port of this host: same-site, not same-origin) gets
    # nowhere: not with a GET, not with a POST, not without the UI's header.
    elsewhere = "http://127.0.0.1:1"
    for method, path, headers in [
        ("GET", "/api/auth/me", {}),  # no Origin, no Sec-Fetch-Site
        ("GET", "/api/auth/me", {"Sec-Fetch-Site": "same-site"}),
        ("GET", "/api/auth/me", {"Sec-Fetch-Site": "cross-site"}),
        ("GET", "/api/auth/me", {"Origin": elsewhere, "Sec-Fetch-Site": "same-origin"}),
        ("DELETE", f"/api/projects/{project_id}", {"Origin": elsewhere,
                                                    "X-Requested-With": "vidsync-web"}),
        ("DELETE", f"/api/projects/{project_id}", {"Origin": server.url}),  # no X-Requested-With
        ("DELETE", f"/api/projects/{project_id}", {"X-Requested-With": "x",
                                                    "Sec-Fetch-Site": "same-origin"}),  # no Origin
        ("DELETE", f"/api/projects/{project_id}", {"Origin": "null", "X-Requested-With": "x"}),
    ]:
        r = bare.request(method, path, headers=headers)
        err = assert_error(r, 401, "unauthorized")
        assert "same-origin" in err["message"], (method, headers, err)
    assert browser.get(f"/api/projects/{project_id}").status_code == 200  # still there
    # A cross-origin page cannot start a cookie session either (login CSRF).
    r = bare.post("/api/auth/login", json={"email": "a@example.com", "password": PASSWORD,
                                           "cookie": True},
                  headers={"Origin": elsewhere, "X-Requested-With": "x"})
    assert_error(r, 403, "cross_origin")
    assert_error(bare.post("/api/auth/login", json={"email": "a@example.com", "password": "x",
                                                    "cookie": "yes"}), 400, "invalid_body")


def test_logout_revokes_the_session_and_clears_the_cookie(server, browser) -> None:
    r, _ = _register_with_cookie(browser)
    token = browser.cookies["vidsync_session"]
    r = browser.post("/api/auth/logout")
    assert r.status_code == 204
    assert "vidsync_session=" in r.headers["Set-Cookie"] and "max-age=0" in \
        r.headers["Set-Cookie"].lower()
    assert "vidsync_session" not in browser.cookies
    assert_error(Api(server.url).get("/api/auth/me", token=token), 401)
    with httpx.Client(base_url=server.url, cookies={"vidsync_session": token},
                      headers={"Sec-Fetch-Site": "same-origin"}) as stale:
        assert_error(stale.get("/api/auth/me"), 401)


def _socketio_connect(server, cookie: dict, headers: dict, auth: str = "") -> str:
    """Open an Engine.IO polling session, send a Socket.IO CONNECT; returns the server's answer."""
    with httpx.Client(base_url=server.url, timeout=30, cookies=cookie, headers=headers) as c:
        r = c.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert r.status_code == 200, r.text
        sid = r.text.split('"sid":"')[1].split('"')[0]
        q = {"EIO": "4", "transport": "polling", "sid": sid}
        assert c.post("/socket.io/", params=q, content=f"40{auth}").text == "ok"
        return c.get("/socket.io/", params=q).text


def test_socketio_handshake_takes_the_cookie_from_the_same_origin(server, browser) -> None:
    _register_with_cookie(browser)
    cookie = {"vidsync_session": browser.cookies["vidsync_session"]}
    same_origin = {"Sec-Fetch-Site": "same-origin"}
    assert _socketio_connect(server, cookie, same_origin).startswith('40{"sid":')
    assert _socketio_connect(server, cookie, {"Origin": server.url}).startswith('40{"sid":')
    # Without the cookie, or from another origin (which the handshake refuses outright), no.
    assert "unauthorized" in _socketio_connect(server, {}, same_origin)
    assert "unauthorized" in _socketio_connect(server, cookie, {"Sec-Fetch-Site": "same-site"})
    with httpx.Client(base_url=server.url, cookies=cookie) as c:
        r = c.get("/socket.io/", params={"EIO": "4", "transport": "polling"},
                  headers={"Origin": "http://evil.example"})
        assert r.status_code == 403


@pytest.mark.parametrize("path", ["/", "/login", "/projects/x", "/api/auth/me", "/healthz",
                                  "/api/openapi.json", "/no/such/thing"])
def test_every_response_carries_the_browser_defences(server, path: str) -> None:
    r = httpx.get(server.url + path)
    csp = r.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
