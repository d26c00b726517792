"""Roles (owner, editor, viewer), who may do what, role changes, and the author on every event."""

from __future__ import annotations

from harness import Api, change

from server.helpers import assert_error, wait_until


def test_invites_grant_a_role(api: Api, owner, project) -> None:
    token, _ = owner
    base = f"/api/projects/{project}/invites"
    r = api.post(base, json={}, token=token)
    assert r.status_code == 201 and r.json()["invite"]["role"] == "viewer"
    r = api.post(base, json={"role": "editor"}, token=token)
    assert r.status_code == 201 and r.json()["invite"]["role"] == "editor"
    code = r.json()["invite"]["code"]
    assert {i["code"]: i["role"] for i in api.get(base, token=token).json()["invites"]}[code] \
        == "editor"
    for bad in ("owner", "admin", "", None, 1, ["editor"]):
        assert_error(api.post(base, json={"role": bad}, token=token), 400, "invalid_role")

    user, me = api.register("ed")
    r = api.post("/api/projects/join", json={"invite_code": code}, token=user)
    assert r.status_code == 200 and r.json()["role"] == "editor"
    members = api.get(f"/api/projects/{project}", token=user).json()
    assert members["role"] == "editor"
    assert {m["user_id"]: m["role"] for m in members["members"]}[me["id"]] == "editor"
    listed = {p["id"]: p for p in api.get("/api/projects", token=user).json()["projects"]}
    assert listed[project]["role"] == "editor"


def test_editor_writes_but_does_not_administer(api: Api, owner, project) -> None:
    token, owner_user = owner
    editor, editor_user = api.editor(token, project)
    viewer, viewer_user = api.viewer(token, project)

    # Uploads and posts like the owner; the event says who wrote it.
    digest = api.upload(editor, project, b"mix v1")
    r = api.post(f"/api/projects/{project}/files/update", token=editor, json={"changes": [
        {"path": "audio/mix.wav", "op": "create", "hash": digest, "size": 6}]})
    assert r.status_code == 200, r.text
    assert api.post_changes(token, project, [change("cut.prproj")]).status_code == 200
    events = api.get(f"/api/projects/{project}/events", token=viewer).json()["events"]
    assert [(e["change"]["path"], e["author"]) for e in events] == [
        ("audio/mix.wav", {"id": editor_user["id"], "name": editor_user["name"]}),
        ("cut.prproj", {"id": owner_user["id"], "name": owner_user["name"]})]

    # What only the owner may do.
    pid = f"/api/projects/{project}"
    for method, path, body in [
            ("POST", f"{pid}/invites", {}), ("GET", f"{pid}/invites", None),
            ("PATCH", pid, {"name": "mine"}), ("DELETE", pid, None),
            ("DELETE", f"{pid}/members/{viewer_user['id']}", None),
            ("PATCH", f"{pid}/members/{viewer_user['id']}", {"role": "editor"})]:
        assert_error(api.request(method, path, token=editor, json=body), 403, "forbidden")
    assert api.get(pid, token=token).json()["project"]["name"] == "film"

    # A viewer can neither post nor upload, and nothing is appended.
    last = api.get(f"{pid}/events", token=token).json()["last_seq"]
    assert_error(api.post_changes(viewer, project, [change("v.mov")]), 403, "forbidden")
    assert_error(api.post(f"{pid}/blocks/check", json={"hashes": []}, token=viewer), 403)
    assert api.get(f"{pid}/events", token=token).json()["last_seq"] == last


def test_owner_changes_roles_and_it_takes_effect_at_once(api: Api, owner, project, listen) -> None:
    token, owner_user = owner
    member, member_user = api.viewer(token, project)
    url = f"/api/projects/{project}/members/{member_user['id']}"
    client = listen(member)
    assert client.subscribe(project)["ok"]
    assert_error(api.post_changes(member, project, [change("a.mov")]), 403, "forbidden")

    r = api.patch(url, json={"role": "editor"}, token=token)
    assert r.status_code == 200, r.text
    assert r.json()["member"]["role"] == "editor" and r.json()["member"]["user_id"] == \
        member_user["id"]
    assert api.post_changes(member, project, [change("a.mov")]).status_code == 200
    wait_until(lambda: client.named("project:role"), what="project:role")
    assert client.named("project:role") == [
        {"project_id": project, "user_id": member_user["id"], "role": "editor"}]

    assert api.patch(url, json={"role": "viewer"}, token=token).json()["member"]["role"] == "viewer"
    assert_error(api.post_changes(member, project, [change("b.mov")]), 403, "forbidden")
    wait_until(lambda: len(client.named("project:role")) == 2, what="the demotion")
    assert client.named("project:role")[-1]["role"] == "viewer"
    assert client.connected  # still a member: it keeps receiving

    # Bad requests.
    for body in ({"role": "owner"}, {"role": "boss"}, {}, {"role": None}):
        assert_error(api.patch(url, json=body, token=token), 400, "invalid_role")
    assert_error(api.patch(url, json="editor", token=token), 400, "invalid_body")
    assert_error(api.patch(f"/api/projects/{project}/members/{owner_user['id']}",
                           json={"role": "viewer"}, token=token), 409, "cannot_change_owner")
    stranger, stranger_user = api.register("stranger")
    assert_error(api.patch(f"/api/projects/{project}/members/{stranger_user['id']}",
                           json={"role": "editor"}, token=token), 404, "not_found")
    assert_error(api.patch(url, json={"role": "editor"}, token=stranger), 404, "not_found")


def test_owner_removes_an_editor(api: Api, owner, project, listen) -> None:
    token, _ = owner
    editor, editor_user = api.editor(token, project)
    client = listen(editor)
    assert client.subscribe(project)["ok"]
    r = api.delete(f"/api/projects/{project}/members/{editor_user['id']}", token=token)
    assert r.status_code == 204
    wait_until(lambda: client.named("project:removed"), what="project:removed")
    assert_error(api.post_changes(editor, project, [change("x.mov")]), 404, "not_found")


def test_author_is_on_live_and_replayed_events(api: Api, owner, project, listen) -> None:
    token, _ = owner
    editor, editor_user = api.editor(token, project)
    plain, batched = listen(token), listen(token)
    assert plain.subscribe({"projectId": project, "since_seq": 0})["ok"]
    assert batched.subscribe({"projectId": project, "since_seq": 0, "batch": True})["ok"]
    assert api.post_changes(editor, project, [change("a.mov"), change("b.mov")]).status_code == 200
    assert api.post_changes(token, project, [change("c.mov")]).status_code == 200
    plain.wait_seqs(3)
    batched.wait_seqs(3)
    logged = api.get(f"/api/projects/{project}/events", token=token).json()["events"]
    assert plain.named("project:event") == logged
    assert [e for m in batched.named("project:events") for e in m["events"]] == logged
    assert [e["author"]["id"] for e in logged] == [editor_user["id"]] * 2 + [owner[1]["id"]]
