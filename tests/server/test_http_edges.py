"""Answers at the edges of the API: unknown paths and methods, and requests too broken to parse.

The web UI's catch-all route serves any other path, so it must stay out of /api and /socket.io:
there an unknown path is the API's JSON 404, and a wrong method a 405 that lists the route's
own methods in Allow (as the OpenAPI document does).
"""

from __future__ import annotations

import socket

import pytest
from harness import Api, ServerProcess, wait_until

from server.helpers import assert_error


@pytest.mark.parametrize("method, path, allow", [
    ("OPTIONS", "/api/auth/login", {"POST"}),
    ("GET", "/api/auth/login", {"POST"}),
    ("DELETE", "/api/projects/join", {"POST"}),
    ("GET", "/api/projects/{pid}/blocks/check", {"POST"}),
    ("PUT", "/api/projects", {"GET", "HEAD", "POST"}),
])
def test_wrong_method_is_405_with_the_routes_allow(api: Api, owner, project, method: str, path: str,
                                                  allow: set[str]) -> None:
    r = api.request(method, path.format(pid=project), token=owner[0])
    assert_error(r, 405, "method_not_allowed")
    assert set(r.headers["Allow"].split(",")) == allow


@pytest.mark.parametrize("path", ["/api/nope", "/api", "/api/projects/x/y/z", "/api/auth/"])
def test_unknown_api_path_is_a_json_404(api: Api, path: str) -> None:
    assert_error(api.get(path), 404, "not_found")


def test_the_ui_still_answers_its_own_paths(api: Api) -> None:
    for path in ("/", "/projects/abc", "/apiary"):
        r = api.get(path)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html"), path


def test_a_nul_in_a_header_is_400_and_one_warning(server: ServerProcess) -> None:
    """A request aiohttp cannot parse is the client's fault: one WARNING line saying why, no
    ERROR and no traceback, and nothing of the header's value (it may carry a token)."""
    before = len(server.log.splitlines())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\x00tok\r\n\r\n")
        assert s.recv(100).split(b"\r\n")[0].endswith(b"400 Bad Request")
    lines = wait_until(lambda: [line for line in server.log.splitlines()[before:]
                                if "unparsable request" in line], what="the warning")
    assert len(lines) == 1 and '"level": "WARNING"' in lines[0], lines
    assert "header" in lines[0].lower() and "secret" not in lines[0]
    assert not [line for line in server.log.splitlines()[before:]
                if '"level": "ERROR"' in line or "Traceback" in line]
