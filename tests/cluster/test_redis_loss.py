"""Redis pub/sub loses messages (a restart, a dropped subscription, a failed publish): the nodes
notice and fill what they missed from the database, even when nothing else is posted after."""

from __future__ import annotations

import threading
import time

import httpx
import orjson
from harness import Api, ServerProcess
from prometheus_client.parser import text_string_to_metric_families

from cluster.conftest import RedisProcess
from cluster.helpers import Subscriber, post, wait_until


def metric(node: ServerProcess, name: str) -> float:
    text = httpx.get(node.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no metric {name}")


def ready(node: ServerProcess) -> bool:
    return httpx.get(node.url + "/readyz").status_code == 200


def test_redis_restarted_mid_stream_no_subscriber_misses_an_event(
        two_nodes: tuple[ServerProcess, ServerProcess], redis_server: RedisProcess) -> None:
    a, b = two_nodes
    api_a, api_b = Api(a.url), Api(b.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    viewer, _ = api_a.viewer(owner, pid)
    subs = [Subscriber(a.url, viewer, pid), Subscriber(b.url, viewer, pid),
            Subscriber(b.url, viewer, pid, transports=["polling"], batch=True)]
    stop = threading.Event()
    last_seqs: list[int] = []

    def keep_posting() -> None:
        i = 0
        while not stop.is_set():
            api = (api_a, api_b)[i % 2]
            last_seqs.append(post(api, owner, pid, f"stream{i}", n=1 + i % 2).json()["last_seq"])
            i += 1
            time.sleep(0.02)

    poster = threading.Thread(target=keep_posting)
    poster.start()
    try:
        wait_until(lambda: len(last_seqs) > 5, 10, "posts before the restart")
        redis_server.kill()
        wait_until(lambda: not ready(a) and not ready(b), 10, "both nodes to report Redis down")
        body = httpx.get(b.url + "/readyz").json()
        assert body["checks"]["database"]["ok"] and not body["checks"]["backplane"]["ok"]
        posted_while_down = len(last_seqs)
        wait_until(lambda: len(last_seqs) > posted_while_down + 5, 10, "posts while Redis is down")
        redis_server.start()
        wait_until(lambda: ready(a) and ready(b), 10, "both nodes ready again")
        time.sleep(0.3)
    finally:
        stop.set()
        poster.join()
    try:
        last = max(last_seqs)
        for sub in subs:
            assert sub.wait_for(last, 10) == list(range(1, last + 1))
        for node in (a, b):
            assert metric(node, "vidsync_backplane_gaps_total") >= 1  # the resubscription
            assert metric(node, "vidsync_backplane_up") == 1
    finally:
        for sub in subs:
            sub.close()


def test_events_posted_while_redis_is_down_arrive_with_nothing_posted_after(
        two_nodes: tuple[ServerProcess, ServerProcess], redis_server: RedisProcess) -> None:
    a, b = two_nodes
    api_a = Api(a.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    sub = Subscriber(b.url, owner, pid)
    try:
        assert sub.wait_for(post(api_a, owner, pid, "before").json()["last_seq"]) == [1]
        redis_server.kill()
        last = post(api_a, owner, pid, "during", n=3).json()["last_seq"]
        time.sleep(0.5)
        assert sub.seqs() == [1]  # no road from node A to node B's subscriber yet
        redis_server.start()
        assert sub.wait_for(last, 10) == [1, 2, 3, 4]
        assert metric(b, "vidsync_backplane_events_refilled_total") == 3
    finally:
        sub.close()


def test_a_lost_last_message_is_noticed_by_the_next_heartbeat(
        start_node, redis_server: RedisProcess) -> None:
    # Node A shares the database but has no backplane: as if every message it sent were lost.
    a, b = start_node(backplane=False), start_node()
    api_a = Api(a.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    sub = Subscriber(b.url, owner, pid)
    try:
        last = post(api_a, owner, pid, "unannounced", n=2).json()["last_seq"]
        time.sleep(1.2)
        assert sub.seqs() == []  # B has no way of knowing yet
        # A peer's heartbeat says its latest message is number 1, which B never received.
        redis_server.client().publish("vidsync:events", orjson.dumps({"n": "peer", "i": 1, "k": "hb"}))
        assert sub.wait_for(last, 5) == [1, 2]
        assert metric(b, "vidsync_backplane_gaps_total") >= 1
        assert metric(b, "vidsync_backplane_events_refilled_total") == 2
    finally:
        sub.close()


def test_a_node_that_dies_before_announcing_its_commit_is_noticed_by_its_silence(
        start_node, redis_server: RedisProcess) -> None:
    a, b = start_node(backplane=False), start_node()
    api_a = Api(a.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    sub = Subscriber(b.url, owner, pid)
    try:
        # A peer heartbeats (nothing sent yet), commits through A, and dies before announcing it.
        redis_server.client().publish("vidsync:events", orjson.dumps({"n": "peer", "i": 0, "k": "hb"}))
        last = post(api_a, owner, pid, "unannounced", n=2).json()["last_seq"]
        time.sleep(1)
        assert sub.seqs() == []  # the peer is not silent for long enough yet
        assert sub.wait_for(last, 10) == [1, 2]
        assert metric(b, "vidsync_backplane_events_refilled_total") == 2
    finally:
        sub.close()


def test_a_lost_removal_or_logout_is_enforced_after_the_loss_is_noticed(
        start_node, redis_server: RedisProcess) -> None:
    # Node A announces nothing: its removal and logout never reach node B as messages.
    a, b = start_node(backplane=False), start_node()
    api_a = Api(a.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    removed_token, removed = api_a.viewer(owner, pid)
    leaving_token, _ = api_a.viewer(owner, pid)
    subs = [Subscriber(b.url, removed_token, pid), Subscriber(b.url, leaving_token, pid)]
    try:
        assert api_a.delete(f"/api/projects/{pid}/members/{removed['id']}", token=owner).status_code == 204
        assert api_a.post("/api/auth/logout", token=leaving_token).status_code == 204
        time.sleep(0.5)
        assert subs[0].removed == [] and not subs[1].disconnected.is_set()
        redis_server.client().publish("vidsync:events", orjson.dumps({"n": "peer", "i": 1, "k": "hb"}))
        wait_until(lambda: subs[0].removed, 5, "the removed member's subscription to end")
        assert subs[0].removed == [{"project_id": pid, "reason": "removed from project"}]
        assert subs[1].disconnected.wait(5), "the logged-out token's socket is closed"
    finally:
        for sub in subs:
            sub.close()
