"""Crashes and shutdowns: no acknowledged event is lost, and numbering carries on without a gap."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import httpx
from harness import Api, ServerProcess, change

from server.helpers import all_events, wait_until


class Posters:
    """Owner clients posting batches non-stop, each with an Idempotency-Key, recording what the
    server acknowledged and what was in flight when the connection broke."""

    def __init__(self, url: str, token: str, project: str, clients: int = 3) -> None:
        self.url, self.token, self.project = url, token, project
        self.acked: list[tuple[str, list[dict], dict]] = []  # (key, changes, response)
        self.unanswered: list[tuple[str, list[dict]]] = []
        self.refused: list[str] = []
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]
        for t in self._threads:
            t.start()

    def _run(self, client: int) -> None:
        api = Api(self.url)
        i = 0
        while True:
            key = f"c{client}-{i}-{uuid.uuid4().hex[:6]}"
            changes = [change(f"c{client}/{i}/{j}.mov", n=j % 2) for j in range(1 + i % 5)]
            try:
                r = api.post_changes(self.token, self.project, changes, key=key)
            except httpx.HTTPError:
                self.unanswered.append((key, changes))
                break
            if r.status_code != 200:
                self.refused.append(f"{r.status_code} {r.text}")
                break
            self.acked.append((key, changes, r.json()))
            i += 1
        api.http.close()

    def join(self) -> None:
        for t in self._threads:
            t.join(30)


def check_log(api: Api, token: str, project: str, posters: Posters) -> list[dict]:
    """Every acknowledged result is in the log, at its seq, and the log is exactly 1..N."""
    events = all_events(api, token, project)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    by_seq = {e["seq"]: e["change"] for e in events}
    for _, changes, response in posters.acked:
        for c, result in zip(changes, response["results"], strict=True):
            assert by_seq.get(result["seq"]) == c, f"acknowledged seq {result['seq']} lost or changed"
    return events


def test_sigkill_loses_no_acknowledged_event(server_factory) -> None:
    server: ServerProcess = server_factory()
    api = Api(server.url)
    token, _ = api.register("owner")
    project = api.project(token)
    posters = Posters(server.url, token, project)
    wait_until(lambda: len(posters.acked) >= 60, 30, "posts before the crash")
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    posters.join()
    assert not posters.refused, posters.refused
    acked_max = max(x["seq"] for *_, resp in posters.acked for x in resp["results"])

    server.start()
    api = Api(server.url)
    events = check_log(api, token, project, posters)
    assert len(events) >= acked_max
    # A post cut off by the crash, retried with its key: answered from the log if it was
    # committed, appended now if not; either way it is in the log once.
    for key, changes in posters.unanswered:
        r = api.post_changes(token, project, changes, key=key)
        assert r.status_code == 200, r.text
    events = all_events(api, token, project)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    paths = [e["change"]["path"] for e in events]
    assert len(paths) == len(set(paths)), "a retried batch was appended twice"
    for _, changes in posters.unanswered:
        assert {c["path"] for c in changes} <= set(paths)
    # Numbering carries on from where the log stopped.
    r = api.post_changes(token, project, [change("after-restart.mov")])
    assert r.json()["results"][0]["seq"] == len(events) + 1


def test_sigterm_shuts_down_cleanly_losing_nothing(server_factory, listen) -> None:
    server: ServerProcess = server_factory()
    api = Api(server.url)
    token, _ = api.register("owner")
    project = api.project(token)
    # Also connected at shutdown: a Socket.IO subscriber and a long-poll.
    subscriber = listen(token, ["websocket"], url=server.url)
    assert subscriber.subscribe(project)["ok"]
    long_poll: dict = {}

    def poll() -> None:
        try:
            reader = Api(server.url)
            long_poll["response"] = reader.get(f"/api/projects/{project}/events",
                                               params={"since_seq": 10**9, "wait": 30}, token=token)
        except httpx.HTTPError as e:
            long_poll["error"] = e

    poller = threading.Thread(target=poll)
    poller.start()
    posters = Posters(server.url, token, project)
    wait_until(lambda: len(posters.acked) >= 60, 30, "posts before the shutdown")
    start = time.monotonic()
    assert server.stop() == 0, server.log[-2000:]
    took = time.monotonic() - start
    posters.join()
    poller.join(30)
    assert not posters.refused, posters.refused
    # The long-poll and the subscriber must not hold the shutdown for the grace period (10 s).
    assert took < 5, f"shutdown took {took:.1f} s; server log:\n{server.log[-6000:]}"
    wait_until(lambda: not subscriber.connected, what="the subscriber's disconnect")
    # The parked long-poll was answered (not cut off, nor holding the shutdown up).
    assert long_poll["response"].json()["events"] == [], long_poll

    server.start()
    api = Api(server.url)
    events = check_log(api, token, project, posters)
    r = api.post_changes(token, project, [change("after-restart.mov")])
    assert r.json()["results"][0]["seq"] == len(events) + 1
