"""Socket.IO with the python-socketio client over WebSocket, long-polling, and polling-then-upgrade."""

from __future__ import annotations

import threading
import time

import pytest
import socketio
from harness import Api, ServerProcess, change

from server.helpers import Listener, all_events, wait_until

TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "upgrade": None}


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> list[str] | None:
    return TRANSPORTS[request.param]


def post(api: Api, token: str, project: str, *paths: str) -> list[int]:
    r = api.post_changes(token, project, [change(p) for p in paths])
    assert r.status_code == 200, r.text
    return [x["seq"] for x in r.json()["results"]]


def test_connect_needs_a_token(api: Api, listen, transport) -> None:
    for token in (None, "", "bogus"):
        client = listen(token, transport, connect=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect()
        assert len(client.connect_errors) == 1, client.connect_errors
        err = client.connect_errors[0]
        assert err["message"] == "unauthorized"
        assert err["data"]["code"] == "unauthorized" and err["data"]["message"]
    revoked, _ = api.register("gone")
    api.post("/api/auth/logout", token=revoked)
    client = listen(revoked, transport, connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect()
    assert client.connect_errors[0]["message"] == "unauthorized"


def test_seed_form_subscribe_gets_live_events(api: Api, owner, project, listen, transport) -> None:
    token, _ = owner
    post(api, token, project, "before.mov")
    viewer, _ = api.viewer(token, project)
    client = listen(viewer, transport)
    if transport is None:
        wait_until(lambda: client.transport() == "websocket", what="the upgrade")
    ack = client.subscribe(project)
    assert ack == {"ok": True, "project_id": project, "last_seq": 1}
    seqs = post(api, token, project, "a.mov", "b.mov") + post(api, token, project, "c.mov")
    assert client.wait_seqs(3) == seqs == [2, 3, 4]
    events = client.named("project:event")
    assert events == all_events(api, token, project, since_seq=1)


def test_subscribe_since_seq_replays_then_goes_live(api: Api, owner, project, listen, transport) -> None:
    token, _ = owner
    post(api, token, project, *[f"old/{i}.mov" for i in range(5)])
    client = listen(token, transport)
    ack = client.subscribe({"projectId": project, "since_seq": 2})
    assert ack == {"ok": True, "project_id": project, "last_seq": 5}
    assert client.wait_seqs(3) == [3, 4, 5]
    post(api, token, project, "new.mov")
    assert client.wait_seqs(4) == [3, 4, 5, 6]
    assert client.named("project:event") == all_events(api, token, project, since_seq=2)
    # Subscribing again from 0 replays everything once more, then carries on live.
    assert client.subscribe({"projectId": project, "since_seq": 0})["last_seq"] == 6
    assert client.wait_seqs(10) == [3, 4, 5, 6, 1, 2, 3, 4, 5, 6]


def test_since_seq_past_the_log_is_refused(api: Api, owner, project, listen, transport) -> None:
    """A client that has seen more than the log holds is told so, not silently resumed."""
    token, _ = owner
    post(api, token, project, "a.mov", "b.mov")
    client = listen(token, transport)
    ack = client.subscribe({"projectId": project, "since_seq": 5})
    assert ack["ok"] is False and ack["error"]["code"] == "since_seq_ahead"
    assert ack["error"]["last_seq"] == 2
    post(api, token, project, "c.mov")  # not subscribed: nothing arrives
    assert client.subscribe({"projectId": project, "since_seq": 2})["ok"]
    assert client.wait_seqs(1) == [3]


def test_non_member_gets_an_error_and_nothing(api: Api, owner, project, listen, transport) -> None:
    token, _ = owner
    stranger, _ = api.register("stranger")
    client = listen(stranger, transport)
    for arg in (project, {"projectId": project, "since_seq": 0}, "no-such-project"):
        ack = client.subscribe(arg)
        assert ack["ok"] is False and ack["error"]["code"] == "not_found", ack
    # The stranger's own project, as a sentinel: its event arrives after any leak would have.
    own = api.project(stranger)
    assert client.subscribe(own)["ok"] is True
    post(api, token, project, "secret.mov")
    post(api, stranger, own, "mine.mov")
    client.wait_seqs(1)
    assert [d["project_id"] for n, d, _ in client.received if n != "project:locks"] == [own]


def test_bad_subscribe_arguments(api: Api, owner, project, listen) -> None:
    token, _ = owner
    client = listen(token, ["websocket"])
    for arg, code in [(None, "invalid_project_id"), ({}, "invalid_project_id"), (42, "invalid_project_id"),
                      ("x" * 101, "invalid_project_id"),
                      ({"projectId": project, "since_seq": -1}, "invalid_since_seq"),
                      ({"projectId": project, "since_seq": "3"}, "invalid_since_seq"),
                      ({"projectId": project, "paths": "clips/"}, "invalid_paths"),
                      ({"projectId": project, "paths": ["../up"]}, "invalid_paths")]:
        ack = client.subscribe(arg)
        assert ack["ok"] is False and ack["error"]["code"] == code, (arg, ack)
    ack = client.call("no:such:event", {})
    assert ack["ok"] is False and ack["error"]["code"] == "unknown_event"
    assert client.connected


def test_unsubscribe_stops_delivery(api: Api, owner, project, listen, transport) -> None:
    token, _ = owner
    sentinel = api.project(token, "sentinel")
    client = listen(token, transport)
    assert client.subscribe(project)["ok"] and client.subscribe(sentinel)["ok"]
    post(api, token, project, "a.mov")
    client.wait_seqs(1)
    assert client.call("unsubscribe:project", project) == {"ok": True, "project_id": project}
    post(api, token, project, "b.mov")
    post(api, token, sentinel, "s.mov")
    wait_until(lambda: client.seqs(sentinel), what="the sentinel")
    assert client.seqs(project) == [1]
    # The object form works too.
    assert client.call("unsubscribe:project", {"projectId": sentinel})["ok"] is True


def test_batch_subscription_gets_one_message_per_post(api: Api, owner, project, listen, transport) -> None:
    token, _ = owner
    client = listen(token, transport)
    assert client.subscribe({"projectId": project, "batch": True})["ok"]
    post(api, token, project, "a.mov", "b.mov", "c.mov")
    post(api, token, project, "d.mov")
    client.wait_seqs(4)
    batches = client.named("project:events")
    assert [[e["seq"] for e in b["events"]] for b in batches] == [[1, 2, 3], [4]]
    assert [b["last_seq"] for b in batches] == [3, 4] and all(b["project_id"] == project for b in batches)
    assert batches[0]["events"] == all_events(api, token, project)[:3]
    assert client.named("project:event") == []


def test_paths_filter(api: Api, owner, project, listen, transport) -> None:
    token, _ = owner
    client = listen(token, transport)
    ack = client.subscribe({"projectId": project, "paths": ["clips/", "audio"]})
    assert ack["ok"] is True
    post(api, token, project, "clips/a.mov", "docs/x.txt", "audio/b.wav", "clipsX/c.mov")
    post(api, token, project, "docs/y.txt", "root.txt")
    post(api, token, project, "clips/deep/d.mov")
    client.wait_seqs(3)
    wait_until(lambda: client.named("project:seq"), what="project:seq")
    assert [(e["seq"], e["change"]["path"]) for e in client.named("project:event")] == [
        (1, "clips/a.mov"), (3, "audio/b.wav"), (7, "clips/deep/d.mov")]
    assert client.named("project:seq") == [{"project_id": project, "last_seq": 6}]
    names = [n for n, _, _ in client.received]
    assert names == ["project:locks", "project:event", "project:event", "project:seq",
                     "project:event"]


def test_paths_filter_same_for_replay_live_and_http(api: Api, owner, project, listen) -> None:
    """A subscription's filter picks the same events whether they are replayed or live, and the
    same as ``/events?paths=``: a file named like the folder is not in it."""
    token, _ = owner
    names = ("clips", "clips/a.mov", "clipsX/b.mov", "clips.mov")
    post(api, token, project, *names)
    client = listen(token, ["websocket"])
    assert client.subscribe({"projectId": project, "since_seq": 0, "paths": ["clips/"]})["ok"]
    post(api, token, project, *names)
    post(api, token, project, "clips/end.mov")
    wait_until(lambda: 9 in client.seqs(), what="the last event")
    http = [e["seq"] for e in all_events(api, token, project, paths="clips/")]
    assert client.seqs() == http == [2, 6, 9]


def test_removed_member_subscription_ends(api: Api, owner, project, listen, transport) -> None:
    token, _ = owner
    viewer, viewer_user = api.viewer(token, project)
    sentinel = api.project(token, "sentinel")
    code = api.post(f"/api/projects/{sentinel}/invites", token=token).json()["invite"]["code"]
    api.post("/api/projects/join", json={"invite_code": code}, token=viewer)
    client = listen(viewer, transport)
    assert client.subscribe(project)["ok"] and client.subscribe(sentinel)["ok"]
    post(api, token, project, "a.mov")
    client.wait_seqs(1)

    assert api.delete(f"/api/projects/{project}/members/{viewer_user['id']}", token=token).status_code == 204
    wait_until(lambda: client.named("project:removed"), what="project:removed")
    assert client.named("project:removed")[0]["project_id"] == project
    assert client.named("project:removed")[0]["reason"]
    post(api, token, project, "b.mov")
    post(api, token, sentinel, "s.mov")
    wait_until(lambda: client.seqs(sentinel), what="the sentinel")
    assert client.seqs(project) == [1]
    assert client.connected
    ack = client.subscribe({"projectId": project, "since_seq": 0})
    assert ack["ok"] is False and ack["error"]["code"] == "not_found"


def test_deleted_project_subscriptions_end(api: Api, owner, project, listen, transport) -> None:
    token, _ = owner
    viewer, _ = api.viewer(token, project)
    clients = [listen(viewer, transport), listen(token, transport)]
    for client in clients:
        assert client.subscribe(project)["ok"]
    assert api.delete(f"/api/projects/{project}", token=token).status_code == 204
    for client in clients:
        wait_until(lambda c=client: c.named("project:removed"), what="project:removed")
        assert [d["project_id"] for d in client.named("project:removed")] == [project]
        ack = client.subscribe(project)
        assert ack["ok"] is False and ack["error"]["code"] == "not_found"


def test_logout_disconnects_that_tokens_sockets(api: Api, owner, project, listen, transport) -> None:
    token, user = owner
    other = api.post("/api/auth/login", json={"email": user["email"], "password": "correct horse 1"})
    other_token = other.json()["token"]
    doomed = [listen(token, transport), listen(token, ["websocket"])]
    survivor = listen(other_token, transport)
    for client in (*doomed, survivor):
        assert client.subscribe(project)["ok"]
    assert api.post("/api/auth/logout", token=token).status_code == 204
    for client in doomed:
        wait_until(lambda c=client: not c.connected, what="the disconnect")
        assert client.disconnects and client.disconnects[0] == client.sio.reason.SERVER_DISCONNECT
    post(api, other_token, project, "still.mov")
    assert survivor.wait_seqs(1) == [1] and survivor.connected


def test_large_batches_live_and_replayed(api: Api, owner, project, listen, transport) -> None:
    """A burst of many packets reaches every client (python-engineio's polling client refuses a
    response of more than 16 packets)."""
    token, _ = owner
    post(api, token, project, *[f"old/{i}.mov" for i in range(120)])
    client = listen(token, transport)
    assert client.subscribe({"projectId": project, "since_seq": 0})["last_seq"] == 120
    post(api, token, project, *[f"new/{i}.mov" for i in range(150)])
    assert client.wait_seqs(270) == list(range(1, 271))
    assert client.connected


def test_subscribe_racing_the_last_unsubscribe(api: Api, owner, listen) -> None:
    """B subscribes (seed form) while A, the project's only subscriber, unsubscribes: B must still
    get live events. (The hub once dropped the emptied channel under B's pending subscribe.)"""
    token, _ = owner
    a, b = listen(token, ["websocket"]), listen(token, ["websocket"])
    projects = []
    for i in range(150):
        project = api.project(token, f"race {i}")
        projects.append(project)
        assert a.subscribe(project)["ok"]
        acked = threading.Event()
        b.emit("subscribe:project", project, callback=lambda *_, done=acked: done.set())
        until = time.perf_counter() + 0.0001 * (i % 5)  # land A's packet inside B's subscribe
        while time.perf_counter() < until:
            pass
        a.emit("unsubscribe:project", project)
        assert acked.wait(10)
    for project in projects:
        post(api, token, project, "x.mov")
    wait_until(lambda: len(b.seqs()) >= len(projects), what="one event per project")
    assert [p for p in projects if b.seqs(p) != [1]] == []


def test_removal_racing_a_subscribe_leaves_nothing_subscribed(server: ServerProcess, api: Api, owner,
                                                               project, listen) -> None:
    """A member removed while their subscribe is being handled is not left subscribed: either
    the subscribe is refused or the removal ends it."""
    token, _ = owner
    viewer, viewer_user = api.register("viewer")
    remover = Api(server.url)
    sockets = [listen(viewer, ["websocket"]) for _ in range(8)]
    for i in range(25):
        code = api.post(f"/api/projects/{project}/invites", token=token).json()["invite"]["code"]
        assert api.post("/api/projects/join", json={"invite_code": code}, token=viewer).status_code == 200
        acked = threading.Semaphore(0)
        removal = threading.Thread(target=remover.delete, args=(
            f"/api/projects/{project}/members/{viewer_user['id']}",), kwargs={"token": token})
        if i % 2:
            removal.start()
        for client in sockets:
            client.emit("subscribe:project", project, callback=lambda *_, done=acked: done.release())
        if not i % 2:
            removal.start()
        removal.join()
        for _ in sockets:
            assert acked.acquire(timeout=10)
        seq = post(api, token, project, f"after-removal-{i}.mov")[0]
        for client in sockets:
            client.call("unsubscribe:project", "barrier")  # the event, if sent, came before this
            assert seq not in client.seqs(project), f"a removed member got event {seq}"
    remover.http.close()


def test_logout_racing_a_connect_leaves_nothing_connected(server: ServerProcess, api: Api, owner) -> None:
    """Sockets connecting with a token while it is logged out end up refused or disconnected."""
    _, user = owner
    for i in range(20):
        token = api.post("/api/auth/login", json={"email": user["email"],
                                                  "password": "correct horse 1"}).json()["token"]
        clients = [Listener(server.url, token, ["websocket"], connect=False) for _ in range(12)]
        threads = [threading.Thread(target=_try_connect, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        until = time.perf_counter() + 0.0002 * (i % 20)
        while time.perf_counter() < until:
            pass
        assert api.post("/api/auth/logout", token=token).status_code == 204
        for t in threads:
            t.join()
        try:
            wait_until(lambda cs=clients: not any(c.connected for c in cs), 2, "every socket to go")
        finally:
            for client in clients:
                client.close()


def _try_connect(client: Listener) -> None:
    try:
        client.connect()
    except socketio.exceptions.ConnectionError:
        pass
