"""Roles and locks across two nodes: a role change made through one node reaches the member's
subscriptions on the other at once, and the demoted writer is refused on both."""

from __future__ import annotations

from harness import Api, ServerProcess, change

from cluster.helpers import Subscriber, wait_until


def test_role_change_reaches_every_node(two_nodes: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = two_nodes
    api_a, api_b = Api(a.url), Api(b.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    editor, editor_user = api_a.editor(owner, pid)
    on_b = Subscriber(b.url, editor, pid)
    owner_on_b = Subscriber(b.url, owner, pid)
    try:
        assert api_b.post_changes(editor, pid, [change("a.mov")]).status_code == 200
        r = api_a.patch(f"/api/projects/{pid}/members/{editor_user['id']}",
                        json={"role": "viewer"}, token=owner)
        assert r.status_code == 200, r.text
        wait_until(lambda: on_b.named("project:role"), 5, "project:role on the other node")
        assert on_b.named("project:role") == [
            {"project_id": pid, "user_id": editor_user["id"], "role": "viewer"}]
        for api in (api_a, api_b):
            r = api.post_changes(editor, pid, [change("b.mov")])
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert owner_on_b.named("project:role") == []  # only the member's own sockets
        assert on_b.sio.connected  # still a member: it keeps receiving
    finally:
        on_b.close()
        owner_on_b.close()


def test_lock_events_and_423_on_every_node(two_nodes: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = two_nodes
    api_a, api_b = Api(a.url), Api(b.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    ana, ana_user = api_a.editor(owner, pid)
    ben, _ = api_a.editor(owner, pid)
    on_b = Subscriber(b.url, ben, pid)
    try:
        r = api_a.post(f"/api/projects/{pid}/locks", json={"path": "cut.prproj"}, token=ana)
        assert r.status_code == 201, r.text
        wait_until(lambda: on_b.named("project:lock"), 5, "project:lock on the other node")
        assert on_b.named("project:lock")[0]["lock"]["user"]["id"] == ana_user["id"]
        r = api_b.post_changes(ben, pid, [change("cut.prproj")])
        assert r.status_code == 423 and r.json()["error"]["code"] == "locked"
        late = Subscriber(b.url, ben, pid)  # subscribing on the other node: the snapshot
        try:
            wait_until(lambda: late.named("project:locks"), 5, "project:locks")
            assert [x["path"] for x in late.named("project:locks")[0]["locks"]] == ["cut.prproj"]
        finally:
            late.close()
        assert api_b.delete(f"/api/projects/{pid}/locks", params={"path": "cut.prproj"},
                            token=owner).status_code == 204  # broken through the other node
        wait_until(lambda: len(on_b.named("project:lock")) == 2, 5, "the unlock")
        assert on_b.named("project:lock")[1]["reason"] == "broken"
        assert api_a.post_changes(ben, pid, [change("cut.prproj")]).status_code == 200
    finally:
        on_b.close()
