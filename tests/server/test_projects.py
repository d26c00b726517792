"""Projects, invites, joining and members, and who may call what."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from harness import Api, ServerProcess, change

from server.helpers import assert_error


def test_project_crud(api: Api, owner) -> None:
    token, user = owner
    r = api.post("/api/projects", json={"name": "  Feature film ", "description": "cut 3"}, token=token)
    assert r.status_code == 201, r.text
    project = r.json()["project"]
    assert project["name"] == "Feature film" and project["description"] == "cut 3"
    assert project["owner_id"] == user["id"] and project["created_at"].endswith("Z")
    pid = project["id"]

    listed = {p["id"]: p for p in api.get("/api/projects", token=token).json()["projects"]}
    assert listed[pid]["role"] == "owner" and listed[pid]["member_count"] == 1
    assert listed[pid]["last_seq"] == 0 and listed[pid]["last_activity_at"] is None

    body = api.get(f"/api/projects/{pid}", token=token).json()
    assert body["project"]["id"] == pid and body["role"] == "owner"
    assert [(m["user_id"], m["role"]) for m in body["members"]] == [(user["id"], "owner")]

    r = api.patch(f"/api/projects/{pid}", json={"description": "cut 4"}, token=token)
    assert r.status_code == 200 and r.json()["project"]["description"] == "cut 4"
    assert r.json()["project"]["name"] == "Feature film"
    r = api.patch(f"/api/projects/{pid}", json={"name": "Renamed"}, token=token)
    assert r.json()["project"]["name"] == "Renamed" and r.json()["project"]["description"] == "cut 4"

    assert api.post_changes(token, pid, [change("a.mov")]).status_code == 200
    listed = {p["id"]: p for p in api.get("/api/projects", token=token).json()["projects"]}
    assert listed[pid]["last_seq"] == 1 and listed[pid]["last_activity_at"].endswith("Z")

    assert api.delete(f"/api/projects/{pid}", token=token).status_code == 204
    assert_error(api.get(f"/api/projects/{pid}", token=token), 404, "not_found")
    assert pid not in {p["id"] for p in api.get("/api/projects", token=token).json()["projects"]}
    assert_error(api.delete(f"/api/projects/{pid}", token=token), 404)


def test_project_bad_input(api: Api, owner, project) -> None:
    token, _ = owner
    for body, code in [({}, "invalid_name"), ({"name": ""}, "invalid_name"),
                       ({"name": "   "}, "invalid_name"), ({"name": 3}, "invalid_name"),
                       ({"name": "n" * 201}, "invalid_name"),
                       ({"name": "ok", "description": ["x"]}, "invalid_description"),
                       ({"name": "ok", "description": "d" * 5001}, "invalid_description")]:
        assert_error(api.post("/api/projects", json=body, token=token), 400, code)
    assert_error(api.post("/api/projects", json="film", token=token), 400, "invalid_body")
    for body, code in [({"name": ""}, "invalid_name"), ({"name": " "}, "invalid_name"),
                       ({"name": False}, "invalid_name"), ({"description": 1}, "invalid_description"),
                       # Null is not "leave it unchanged" (that is leaving the field out).
                       ({"name": None}, "invalid_name"), ({"description": None}, "invalid_description")]:
        assert_error(api.patch(f"/api/projects/{project}", json=body, token=token), 400, code)
    assert_error(api.post("/api/projects", json={"name": "x", "description": None}, token=token),
                 400, "invalid_description")
    assert api.get(f"/api/projects/{project}", token=token).json()["project"]["name"] == "film"


def test_bodies_read_as_their_documented_schema(api: Api, owner, project) -> None:
    """What the OpenAPI document allows is accepted: an invite needs no body, and a whole number
    written as 3600.0 is the integer 3600 (JSON Schema says so)."""
    token, _ = owner
    r = api.post(f"/api/projects/{project}/invites", token=token)
    assert r.status_code == 201 and r.json()["invite"]["max_uses"] is None, r.text
    r = api.post(f"/api/projects/{project}/invites", json={"expires_in_s": 3600.0, "max_uses": 2.0},
                 token=token)
    assert r.status_code == 201 and r.json()["invite"]["max_uses"] == 2, r.text
    assert_error(api.post(f"/api/projects/{project}/invites", json={"expires_in_s": 3600.5},
                          token=token), 400, "invalid_expires_in_s")
    assert_error(api.post(f"/api/projects/{project}/invites", content=b"x", token=token,
                          headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    r = api.patch(f"/api/projects/{project}", json={"name": "\u3000film\u3000 "}, token=token)
    # Only ASCII white space is trimmed: the set the document's patterns can state exactly.
    assert r.json()["project"]["name"] == "\u3000film\u3000"
    assert_error(api.patch(f"/api/projects/{project}", json={"name": " \t\n"}, token=token), 400,
                 "invalid_name")


def test_invites_join_and_members(api: Api, owner, project) -> None:
    token, owner_user = owner
    r = api.post(f"/api/projects/{project}/invites", json={"expires_in_s": 3600, "max_uses": 2},
                 token=token)
    assert r.status_code == 201, r.text
    invite = r.json()["invite"]
    assert invite["max_uses"] == 2 and invite["uses"] == 0
    expires = datetime.fromisoformat(invite["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)
    default = api.post(f"/api/projects/{project}/invites", token=token).json()["invite"]
    assert default["max_uses"] is None
    codes = [i["code"] for i in api.get(f"/api/projects/{project}/invites", token=token).json()["invites"]]
    assert sorted(codes) == sorted([invite["code"], default["code"]])

    v1, u1 = api.register("v1")
    r = api.post("/api/projects/join", json={"invite_code": invite["code"]}, token=v1)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "viewer" and r.json()["project"]["id"] == project
    # Joining again as a member does not use the invite up; a whole invite link works too.
    r = api.post("/api/projects/join", json={"invite_code": f"http://x/join/{invite['code']}"}, token=v1)
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    listed = api.get(f"/api/projects/{project}/invites", token=token).json()["invites"]
    assert {i["code"]: i["uses"] for i in listed}[invite["code"]] == 1

    v2, u2 = api.register("v2")
    assert api.post("/api/projects/join", json={"invite_code": invite["code"]}, token=v2).status_code == 200
    # Used up: no longer listed, and a third user is refused.
    listed = api.get(f"/api/projects/{project}/invites", token=token).json()["invites"]
    assert [i["code"] for i in listed] == [default["code"]]
    v3, _ = api.register("v3")
    assert_error(api.post("/api/projects/join", json={"invite_code": invite["code"]}, token=v3),
                 410, "invite_used_up")

    body = api.get(f"/api/projects/{project}", token=v1).json()
    assert body["role"] == "viewer"
    assert [(m["user_id"], m["role"]) for m in body["members"]] == [
        (owner_user["id"], "owner"), (u1["id"], "viewer"), (u2["id"], "viewer")]
    assert {p["id"]: p["role"] for p in api.get("/api/projects", token=v1).json()["projects"]} == {
        project: "viewer"}
    assert {p["id"]: p["member_count"]
            for p in api.get("/api/projects", token=token).json()["projects"]}[project] == 3

    assert_error(api.delete(f"/api/projects/{project}/members/{u2['id']}", token=v1), 403, "forbidden")
    assert_error(api.delete(f"/api/projects/{project}/members/{owner_user['id']}", token=v1), 403)
    assert api.delete(f"/api/projects/{project}/members/{u1['id']}", token=token).status_code == 204
    assert_error(api.get(f"/api/projects/{project}", token=v1), 404)
    assert api.get("/api/projects", token=v1).json()["projects"] == []
    assert_error(api.delete(f"/api/projects/{project}/members/{u1['id']}", token=token), 404)
    assert_error(api.delete(f"/api/projects/{project}/members/{owner_user['id']}", token=token),
                 409, "cannot_remove_owner")
    # A removed member can come back only with a new invite.
    assert api.post("/api/projects/join", json={"invite_code": default["code"]}, token=v1).status_code == 200

    assert api.delete(f"/api/projects/{project}/invites/{default['code']}", token=token).status_code == 204
    assert_error(api.delete(f"/api/projects/{project}/invites/{default['code']}", token=token), 404)
    assert_error(api.post("/api/projects/join", json={"invite_code": default["code"]}, token=v3),
                 410, "invite_revoked")
    assert_error(api.post("/api/projects/join", json={"invite_code": "no-such-code"}, token=v3),
                 404, "invite_not_found")
    assert api.get(f"/api/projects/{project}/invites", token=token).json()["invites"] == []


def test_invite_bad_input(api: Api, owner, project) -> None:
    token, _ = owner
    for body, code in [({"expires_in_s": 59}, "invalid_expires_in_s"),
                       ({"expires_in_s": 366 * 86400}, "invalid_expires_in_s"),
                       ({"expires_in_s": "3600"}, "invalid_expires_in_s"),
                       ({"expires_in_s": True}, "invalid_expires_in_s"),
                       ({"max_uses": 0}, "invalid_max_uses"), ({"max_uses": 1.5}, "invalid_max_uses"),
                       ({"max_uses": False}, "invalid_max_uses")]:
        assert_error(api.post(f"/api/projects/{project}/invites", json=body, token=token), 400, code)
    assert api.get(f"/api/projects/{project}/invites", token=token).json()["invites"] == []
    viewer, _ = api.register("joiner")
    for body in ({}, {"invite_code": ""}, {"invite_code": 5}, {"invite_code": "x" * 201}):
        assert_error(api.post("/api/projects/join", json=body, token=viewer), 400, "invalid_invite_code")


def age_invite(server: ServerProcess, code: str) -> None:
    """Move an invite's expiry an hour back, in whichever database the server uses."""
    if server.database:
        import psycopg

        with psycopg.connect(server.database, autocommit=True) as db:
            db.execute("UPDATE invites SET expires_at = expires_at - interval '1 hour' WHERE code = %s",
                       (code,))
    else:
        with sqlite3.connect(server.data_dir / "vidsync.db", timeout=10) as db:
            db.execute("UPDATE invites SET expires_at = expires_at - 3600000 WHERE code = ?", (code,))


def test_expired_invite(server: ServerProcess, api: Api, owner, project) -> None:
    token, _ = owner
    code = api.post(f"/api/projects/{project}/invites", json={"expires_in_s": 60},
                    token=token).json()["invite"]["code"]
    age_invite(server, code)  # the shortest invite lasts a minute: as if it had passed long since
    viewer, _ = api.register("late")
    assert_error(api.post("/api/projects/join", json={"invite_code": code}, token=viewer),
                 410, "invite_expired")
    assert api.get(f"/api/projects/{project}/invites", token=token).json()["invites"] == []


@pytest.fixture(scope="module")
def cast(server: ServerProcess) -> Iterator[dict]:
    """One project and every kind of caller for it, by name (token or None), shared by the
    authorization tests below; the project is deleted by the last of them."""
    api = Api(server.url)
    token, _ = api.register("owner")
    project = api.project(token)
    viewer, _ = api.viewer(token, project)
    removed, removed_user = api.viewer(token, project)
    assert api.delete(f"/api/projects/{project}/members/{removed_user['id']}", token=token).status_code == 204
    stranger, _ = api.register("stranger")
    revoked, _ = api.viewer(token, project)
    assert api.post("/api/auth/logout", token=revoked).status_code == 204
    assert api.post_changes(token, project, [change("clips/a.mov")]).status_code == 200
    invite = api.post(f"/api/projects/{project}/invites", token=token).json()["invite"]["code"]
    yield {"owner": token, "viewer": viewer, "removed": removed, "stranger": stranger,
           "revoked": revoked, "none": None, "garbage": "not-a-token", "project": project,
           "invite": invite, "removed_id": removed_user["id"]}
    api.http.close()


# (method, path, body, expected status for owner, viewer); everyone else gets 404 (not a member,
# so the project's existence is not revealed) or 401 (no valid token). In this order: the last
# deletes the project.
ENDPOINTS = [
    ("GET", "/api/projects/{project}", None, 200, 200),
    ("PATCH", "/api/projects/{project}", {"description": "{who}"}, 200, 403),
    ("POST", "/api/projects/{project}/invites", {}, 201, 403),
    ("GET", "/api/projects/{project}/invites", None, 200, 403),
    ("DELETE", "/api/projects/{project}/invites/{invite}", None, 204, 403),
    ("DELETE", "/api/projects/{project}/members/{removed_id}", None, 404, 403),
    ("POST", "/api/projects/{project}/files/update", "CHANGES", 200, 403),
    ("GET", "/api/projects/{project}/events", None, 200, 200),
    ("GET", "/api/projects/{project}/files", None, 200, 200),
    ("DELETE", "/api/projects/{project}", None, 204, 403),
]


@pytest.mark.parametrize(("method", "path", "body", "owner_status", "viewer_status"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_authorization(api: Api, cast: dict, method: str, path: str, body,
                       owner_status: int, viewer_status: int) -> None:
    project, owner_token = cast["project"], cast["owner"]
    url = path.format(**cast)
    expected = {"viewer": viewer_status, "removed": 404, "stranger": 404, "revoked": 401,
                "none": 401, "garbage": 401, "owner": owner_status}
    invites_before = len(api.get(f"/api/projects/{project}/invites", token=owner_token).json()["invites"])
    # The owner goes last, so that a delete does not hide what the others would get.
    for who in ["viewer", "removed", "stranger", "revoked", "none", "garbage", "owner"]:
        token = cast[who]
        if body == "CHANGES":
            r = api.post_changes(token, project, [change(f"{who}.mov")])
        else:
            data = {k: v.format(who=who) for k, v in body.items()} if body else body
            r = api.request(method, url, token=token, json=data)
        if expected[who] >= 400:
            assert_error(r, expected[who])
        else:
            assert r.status_code == expected[who], (who, r.text)
    if url == f"/api/projects/{project}" and method == "DELETE":
        assert_error(api.get(url, token=owner_token), 404)
        return
    # Only the owner's calls changed anything.
    paths = [e["change"]["path"] for e in api.get(f"/api/projects/{project}/events",
                                                  token=cast["viewer"]).json()["events"]]
    assert set(paths) <= {"clips/a.mov", "owner.mov"}
    description = api.get(f"/api/projects/{project}", token=owner_token).json()["project"]["description"]
    assert description in ("", "owner")
    invites = api.get(f"/api/projects/{project}/invites", token=owner_token).json()["invites"]
    assert len(invites) == invites_before + (method == "POST" and body == {}) - (cast["invite"] in url)


@pytest.mark.parametrize("call", ["list", "create", "join", "me", "logout"])
def test_user_calls_need_a_live_token(api: Api, cast: dict, call: str) -> None:
    method, path, body = {"list": ("GET", "/api/projects", None),
                          "create": ("POST", "/api/projects", {"name": "x"}),
                          "join": ("POST", "/api/projects/join", {"invite_code": "x"}),
                          "me": ("GET", "/api/auth/me", None),
                          "logout": ("POST", "/api/auth/logout", None)}[call]
    for who in ("revoked", "none", "garbage"):
        assert_error(api.request(method, path, token=cast[who], json=body), 401, "unauthorized")


