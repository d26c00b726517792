"""File locks: taking, renewing, releasing and breaking them; 423 for changes to a path someone
else holds; live project:lock / project:locks; leases that last while the holder is connected and
run out --lock-ttl after."""

from __future__ import annotations

import time
from datetime import datetime

from harness import Api, change

from server.helpers import assert_error, wait_until


def locks_url(project: str) -> str:
    return f"/api/projects/{project}/locks"


def lock(api: Api, token: str, project: str, path: str):
    return api.post(locks_url(project), json={"path": path}, token=token)


def unlock(api: Api, token: str, project: str, path: str):
    return api.delete(locks_url(project), params={"path": path}, token=token)


def when(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_lock_renew_list_and_someone_elses(api: Api, owner, project) -> None:
    token, _ = owner
    ana, ana_user = api.editor(token, project)
    ben, _ = api.editor(token, project)
    viewer, _ = api.viewer(token, project)

    r = lock(api, ana, project, "cut.prproj")
    assert r.status_code == 201, r.text
    held = r.json()["lock"]
    assert held["path"] == "cut.prproj"
    assert held["user"] == {"id": ana_user["id"], "name": ana_user["name"]}
    assert when(held["expires_at"]) > when(held["acquired_at"])
    again = lock(api, ana, project, "cut.prproj")
    assert again.status_code == 200 and again.json()["lock"]["acquired_at"] == held["acquired_at"]
    assert when(again.json()["lock"]["expires_at"]) >= when(held["expires_at"])

    err = assert_error(lock(api, ben, project, "cut.prproj"), 409, "locked")
    assert err["lock"]["user"]["id"] == ana_user["id"] and err["lock"]["path"] == "cut.prproj"
    assert_error(lock(api, token, project, "cut.prproj"), 409, "locked")  # the owner too
    assert_error(lock(api, viewer, project, "other.mov"), 403, "forbidden")

    assert lock(api, ben, project, "audio/mix.wav").status_code == 201
    listed = api.get(locks_url(project), token=viewer).json()["locks"]
    assert [(x["path"], x["user"]["id"]) for x in listed] == [
        ("audio/mix.wav", listed[0]["user"]["id"]), ("cut.prproj", ana_user["id"])]
    stranger, _ = api.register("stranger")
    assert_error(api.get(locks_url(project), token=stranger), 404, "not_found")
    assert_error(lock(api, stranger, project, "x"), 404, "not_found")


def test_bad_lock_paths(api: Api, owner, project) -> None:
    token, _ = owner
    for bad in ("../outside.mov", "a/../../b", "/etc/passwd", "C:/x", "a//b", "", ".", "a/./b",
                ".vidsync/state", "a\\b", 3, None, ["a"]):
        assert_error(lock(api, token, project, bad), 400, "invalid_path")
    assert_error(api.post(locks_url(project), json={}, token=token), 400, "invalid_path")
    assert_error(api.post(locks_url(project), json=["a"], token=token), 400, "invalid_body")
    assert_error(api.delete(locks_url(project), token=token), 400, "invalid_path")
    assert_error(unlock(api, token, project, "../x"), 400, "invalid_path")
    assert api.get(locks_url(project), token=token).json()["locks"] == []


def test_changes_to_a_locked_path_are_refused_whole(api: Api, owner, project) -> None:
    token, _ = owner
    ana, ana_user = api.editor(token, project)
    ben, _ = api.editor(token, project)
    assert api.post_changes(ana, project, [change("cut.prproj", n=1)]).status_code == 200
    assert lock(api, ana, project, "cut.prproj").status_code == 201
    for who in (ben, token):
        r = api.post_changes(who, project, [change("notes.txt"), change("cut.prproj", "update", 2),
                                            change("cut.prproj", "delete")])
        err = assert_error(r, 423, "locked")
        assert [(x["index"], x["path"], x["lock"]["user"]["id"]) for x in err["locks"]] == [
            (1, "cut.prproj", ana_user["id"]), (2, "cut.prproj", ana_user["id"])]
    assert api.get(f"/api/projects/{project}/events", token=token).json()["last_seq"] == 1
    # The holder writes; other paths stay open to everyone.
    assert api.post_changes(ana, project, [change("cut.prproj", "update", 2)]).status_code == 200
    assert api.post_changes(ben, project, [change("notes.txt")]).status_code == 200


def test_release_and_owner_break(api: Api, owner, project, listen) -> None:
    token, owner_user = owner
    ana, ana_user = api.editor(token, project)
    ben, _ = api.editor(token, project)
    watcher = listen(ben)
    assert watcher.subscribe(project)["ok"]
    assert lock(api, ana, project, "a.mov").status_code == 201
    assert_error(unlock(api, ben, project, "a.mov"), 403, "forbidden")
    assert unlock(api, ana, project, "a.mov").status_code == 204
    assert_error(unlock(api, ana, project, "a.mov"), 404, "not_found")
    assert lock(api, ana, project, "b.mov").status_code == 201
    assert unlock(api, token, project, "b.mov").status_code == 204  # the owner breaks it
    assert api.post_changes(ben, project, [change("b.mov")]).status_code == 200

    wait_until(lambda: len(watcher.named("project:lock")) == 4, what="four lock events")
    events = watcher.named("project:lock")
    assert [(e["path"], e["lock"] is not None, e["reason"]) for e in events] == [
        ("a.mov", True, "locked"), ("a.mov", False, "released"),
        ("b.mov", True, "locked"), ("b.mov", False, "broken")]
    assert events[0]["project_id"] == project
    assert events[0]["lock"]["user"] == {"id": ana_user["id"], "name": ana_user["name"]}
    assert events[3]["by"] == {"id": owner_user["id"], "name": owner_user["name"]}


def test_subscribers_get_the_locks_after_subscribing(api: Api, owner, project, listen) -> None:
    token, _ = owner
    ana, _ = api.editor(token, project)
    assert lock(api, ana, project, "cut.prproj").status_code == 201
    assert api.post_changes(token, project, [change("x.mov")]).status_code == 200
    client = listen(token, ["polling"])
    assert client.subscribe({"projectId": project, "since_seq": 0})["ok"]
    wait_until(lambda: client.named("project:locks"), what="project:locks")
    names = [n for n, _, _ in client.received]
    assert names[:2] == ["project:event", "project:locks"]  # after the replay
    snapshot = client.named("project:locks")[0]
    assert snapshot["project_id"] == project
    assert snapshot["locks"] == api.get(locks_url(project), token=token).json()["locks"]


def test_demoted_or_removed_members_lose_their_locks(api: Api, owner, project, listen) -> None:
    token, _ = owner
    ana, ana_user = api.editor(token, project)
    ben, ben_user = api.editor(token, project)
    watcher = listen(token)
    assert watcher.subscribe(project)["ok"]
    assert lock(api, ana, project, "a.mov").status_code == 201
    assert lock(api, ben, project, "b.mov").status_code == 201
    assert api.patch(f"/api/projects/{project}/members/{ana_user['id']}", json={"role": "viewer"},
                     token=token).status_code == 200
    assert api.delete(f"/api/projects/{project}/members/{ben_user['id']}",
                      token=token).status_code == 204
    assert api.get(locks_url(project), token=token).json()["locks"] == []
    wait_until(lambda: len(watcher.named("project:lock")) == 4, what="the unlocks")
    assert sorted((e["path"], e["reason"]) for e in watcher.named("project:lock")
                  if e["lock"] is None) == [("a.mov", "member_left"), ("b.mov", "member_left")]


def test_a_lease_lasts_while_the_holder_is_connected(server_factory, listen) -> None:
    server = server_factory(["--lock-ttl", "1s"])
    api = Api(server.url)
    token, _ = api.register("owner")
    project = api.project(token)
    ana, _ = api.editor(token, project)
    watcher = listen(token, url=server.url)
    assert watcher.subscribe(project)["ok"]

    holder = listen(ana, url=server.url)
    assert holder.subscribe(project)["ok"]
    first = lock(api, ana, project, "cut.prproj").json()["lock"]
    time.sleep(3)  # three TTLs: renewed all along
    listed = api.get(locks_url(project), token=token).json()["locks"]
    assert [x["path"] for x in listed] == ["cut.prproj"]
    assert when(listed[0]["expires_at"]) > when(first["expires_at"])
    assert all(e["reason"] == "locked" for e in watcher.named("project:lock"))

    holder.close()  # the holder goes away: the lock runs out about a TTL later
    gone = time.monotonic()
    wait_until(lambda: [e for e in watcher.named("project:lock") if e["reason"] == "expired"],
                5, "the lock to expire")
    assert time.monotonic() - gone >= 0.5
    assert api.get(locks_url(project), token=token).json()["locks"] == []
    assert api.post_changes(token, project, [change("cut.prproj")]).status_code == 200

    # Not connected at all: a lock lasts one TTL.
    assert lock(api, ana, project, "b.mov").status_code == 201
    wait_until(lambda: api.get(locks_url(project), token=token).json()["locks"] == [], 5,
               "the unrenewed lock to expire")
    api.http.close()
