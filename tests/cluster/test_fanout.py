"""Two nodes sharing PostgreSQL and Redis: every subscriber, on either node, sees every event
posted to either node, in order, once; removals and logouts act on every node."""

from __future__ import annotations

import time

import httpx
import orjson
from harness import Api, ServerProcess, change

from cluster.conftest import RedisProcess
from cluster.helpers import Subscriber, log_seqs, post, wait_until


def test_subscribers_on_both_nodes_get_every_event_once_in_order(
        two_nodes: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = two_nodes
    api_a, api_b = Api(a.url), Api(b.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    viewer, _ = api_b.viewer(owner, pid)
    subs = [Subscriber(a.url, viewer, pid), Subscriber(b.url, viewer, pid),
            Subscriber(b.url, owner, pid, transports=["polling"]),
            Subscriber(a.url, owner, pid, batch=True), Subscriber(b.url, viewer, pid, batch=True)]
    try:
        last = 0
        for i in range(20):
            # Content uploaded through one node, the changes posted through either.
            api = api_a if i % 2 else api_b
            last = post(api, owner, pid, f"batch{i}", n=1 + i % 3, content_via=api_a).json()["last_seq"]
        expected = list(range(1, last + 1))
        for sub in subs:
            assert sub.wait_for(last) == expected
        time.sleep(0.3)  # nothing more (no late duplicate) arrives
        for sub in subs:
            assert sub.seqs() == expected
        # What crossed the backplane is exactly what the log holds.
        log = api_a.get(f"/api/projects/{pid}/events", token=viewer,
                        params={"since_seq": 0, "limit": 1000}).json()["events"]
        assert subs[1].events == log and subs[3].events == log
    finally:
        for sub in subs:
            sub.close()


def test_removal_logout_and_deletion_act_on_every_node(
        two_nodes: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = two_nodes
    api_a = Api(a.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    removed_token, removed = api_a.viewer(owner, pid)
    leaving_token, _ = api_a.viewer(owner, pid)
    on_b = {name: Subscriber(b.url, token, pid)
            for name, token in (("removed", removed_token), ("leaving", leaving_token),
                                ("owner", owner))}
    try:
        r = api_a.delete(f"/api/projects/{pid}/members/{removed['id']}", token=owner)
        assert r.status_code == 204, r.text
        wait_until(lambda: on_b["removed"].removed, 5, "project:removed on the other node")
        assert on_b["removed"].removed == [{"project_id": pid, "reason": "removed from project"}]

        last = post(api_a, owner, pid, "after-removal").json()["last_seq"]
        assert on_b["leaving"].wait_for(last) == log_seqs(api_a, owner, pid)
        assert on_b["removed"].seqs() == []

        assert api_a.post("/api/auth/logout", token=leaving_token).status_code == 204
        assert on_b["leaving"].disconnected.wait(5), "logout on one node disconnects on the other"

        assert api_a.delete(f"/api/projects/{pid}", token=owner).status_code == 204
        wait_until(lambda: on_b["owner"].removed, 5, "project:removed after deletion")
        assert on_b["owner"].removed == [{"project_id": pid, "reason": "project deleted"}]
    finally:
        for sub in on_b.values():
            sub.close()


def test_a_batch_too_big_for_one_message_is_announced_and_read_from_the_store(
        two_nodes: tuple[ServerProcess, ServerProcess], redis_server: RedisProcess) -> None:
    a, b = two_nodes
    api_a = Api(a.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    sub = Subscriber(b.url, owner, pid, batch=True)
    watcher = redis_server.client().pubsub()
    watcher.subscribe("vidsync:events")
    try:
        deep = "/".join(["d" * 200] * 7)  # 1400-byte paths: 1000 of them make a 1.4 MB batch
        r = api_a.post_changes(owner, pid, [change(f"{deep}/{i:04d}", "delete") for i in range(1000)])
        assert r.status_code == 200, r.text
        assert sub.wait_for(1000) == list(range(1, 1001))
        assert sub.events == api_a.get(f"/api/projects/{pid}/events", token=owner,
                                       params={"since_seq": 0, "limit": 1000}).json()["events"]
        sent = []
        while (msg := watcher.get_message(timeout=0.5)) is not None:
            if msg["type"] != "message":
                continue  # the subscription's confirmation
            body = orjson.loads(msg["data"])
            if body["k"] != "hb":
                sent.append((body, len(msg["data"])))
        assert len(sent) == 1
        body, size = sent[0]
        assert body["k"] == "s" and body["p"] == pid and body["l"] == 1000 and size < 300
        metrics = httpx.get(b.url + "/metrics").text
        assert "vidsync_backplane_events_refilled_total 0.0" in metrics  # announced, not lost
    finally:
        watcher.close()
        sub.close()
