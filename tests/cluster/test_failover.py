"""One node killed: its clients reconnect to the other and resume by seq with nothing lost; posts
through both nodes at once keep the log's seq gap-free and unique."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from harness import Api, ServerProcess

from cluster.helpers import Subscriber, log_seqs, post


def test_clients_of_a_killed_node_resume_on_the_other_by_seq(
        two_nodes: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = two_nodes
    api_a, api_b = Api(a.url), Api(b.url)
    owner, _ = api_a.register("owner")
    pid = api_a.project(owner)
    viewer, _ = api_a.viewer(owner, pid)
    on_a = [Subscriber(a.url, viewer, pid), Subscriber(a.url, viewer, pid, transports=["polling"])]
    resumed: list[Subscriber] = []
    try:
        for i in range(3):
            last = post(api_a, owner, pid, f"before{i}", n=2).json()["last_seq"]
        for sub in on_a:
            sub.wait_for(last)
        # The owner's agent retries a post on the surviving node with the same key: no duplicate.
        first = post(api_a, owner, pid, "keyed", key="batch-7").json()
        a.kill()
        for sub in on_a:
            assert sub.disconnected.wait(30), "the client notices its node is gone"
        assert post(api_b, owner, pid, "keyed", key="batch-7").json() == first
        for i in range(3):  # while the clients are away
            post(api_b, owner, pid, f"away{i}", n=2)
        resumed = [Subscriber(b.url, viewer, pid, since_seq=sub.seqs()[-1], transports=t)
                   for sub, t in zip(on_a, (None, ["polling"]), strict=True)]
        last = post(api_b, owner, pid, "after").json()["last_seq"]
        for old, new in zip(on_a, resumed, strict=True):
            new.wait_for(last)
            assert old.seqs() + new.seqs() == list(range(1, last + 1))
        assert log_seqs(api_b, owner, pid) == list(range(1, last + 1))
    finally:
        for sub in on_a + resumed:
            sub.close()


def test_concurrent_posts_to_one_project_through_both_nodes_are_gap_free(
        two_nodes: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = two_nodes
    owner, _ = Api(a.url).register("owner")
    pid = Api(a.url).project(owner)
    subs = [Subscriber(a.url, owner, pid), Subscriber(b.url, owner, pid)]
    results: list[list[int]] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        api = Api((a.url, b.url)[w % 2])
        for i in range(12):
            body = post(api, owner, pid, f"w{w}-{i}", n=1 + (w + i) % 3).json()
            with lock:
                results.append([r["seq"] for r in body["results"]])

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(writer, range(4)))
        total = sum(len(r) for r in results)
        for seqs in results:  # each batch got consecutive seqs
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert sorted(s for seqs in results for s in seqs) == list(range(1, total + 1))
        assert log_seqs(Api(b.url), owner, pid) == list(range(1, total + 1))
        for sub in subs:
            assert sub.wait_for(total) == list(range(1, total + 1))
    finally:
        for sub in subs:
            sub.close()
