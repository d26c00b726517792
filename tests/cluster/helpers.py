"""Helpers for the multi-node tests: a recording subscriber, posting, and waiting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import httpx
import socketio
from harness import CONTENTS, Api, change, wait_until  # noqa: F401 - re-exported

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _run(coro: Coroutine[Any, Any, Any], timeout: float = 20) -> Any:
    """Run a coroutine on the subscribers' event loop thread (started on first use).

    Why asyncio: python-socketio's threaded client runs each message handler on a thread of its
    own, so the order in which events arrived is lost; the asyncio client handles them in order.
    """
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = asyncio.new_event_loop()
            threading.Thread(target=_LOOP.run_forever, name="subscribers", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coro, _LOOP).result(timeout)


class Subscriber:
    """A Socket.IO client on one node, subscribed to one project, recording what it is sent in
    the order it arrived."""

    def __init__(self, url: str, token: str, project_id: str, since_seq: int | None = None,
                 transports: list[str] | None = None, batch: bool = False) -> None:
        self.project_id = project_id
        self.events: list[dict] = []
        self.removed: list[dict] = []
        self.disconnected = threading.Event()
        self._lock = threading.Lock()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("project:event", self._on_event)
        self.sio.on("project:events", lambda data: self._on_events(data["events"]))
        self.sio.on("project:removed", self.removed.append)
        self.sio.on("disconnect", lambda *args: self.disconnected.set())
        # Every other server event (project:role, project:lock...), as (name, data).
        self.notices: list[tuple[str, Any]] = []
        self.sio.on("*", lambda name, data=None: self.notices.append((name, data)))
        arg: dict[str, Any] = {"projectId": project_id, "batch": batch}
        if since_seq is not None:
            arg["since_seq"] = since_seq
        _run(self.sio.connect(url, auth={"token": token}, transports=transports, wait_timeout=10))
        self.ack = _run(self.sio.call("subscribe:project", arg, timeout=10))
        assert self.ack["ok"], self.ack

    def _on_event(self, event: dict) -> None:
        self._on_events([event])

    def _on_events(self, events: list[dict]) -> None:
        with self._lock:
            self.events += events

    def seqs(self) -> list[int]:
        with self._lock:
            return [e["seq"] for e in self.events]

    def wait_for(self, last_seq: int, timeout: float = 10) -> list[int]:
        wait_until(lambda: (self.seqs() or [0])[-1] >= last_seq, timeout,
                   f"seq {last_seq} (have up to {(self.seqs() or [0])[-1]})")
        return self.seqs()

    def named(self, name: str) -> list[Any]:
        return [data for n, data in list(self.notices) if n == name]

    def close(self) -> None:
        if self.sio.connected:
            _run(self.sio.disconnect())
        elif self.sio.eio.state == "connected":
            _run(self.sio.eio.disconnect(abort=True))


def upload(api: Api, token: str, project_id: str, changes: list[dict]) -> None:
    """Store the content the changes name (each file small enough to be one block)."""
    for c in changes:
        if c["hash"] is None:
            continue
        data = CONTENTS[c["hash"]]
        r = api.request("PUT", f"/api/projects/{project_id}/blocks/{c['hash']}", token=token,
                        content=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code in (200, 201), r.text
        r = api.post(f"/api/projects/{project_id}/manifests", token=token, json={
            "hash": c["hash"], "size": len(data), "blocks": [{"hash": c["hash"], "size": len(data)}]})
        assert r.status_code in (200, 201), r.text


def post(api: Api, token: str, project_id: str, tag: str, n: int = 1,
         content_via: Api | None = None, key: str | None = None) -> httpx.Response:
    """Post ``n`` changes named after ``tag``, their content uploaded first (through
    ``content_via``, another node, if given); asserts success."""
    changes = [change(f"{tag}/{i}.mov", n=i) for i in range(n)]
    upload(content_via or api, token, project_id, changes)
    r = api.post_changes(token, project_id, changes, key=key)
    assert r.status_code == 200, r.text
    return r


def log_seqs(api: Api, token: str, project_id: str) -> list[int]:
    r = api.get(f"/api/projects/{project_id}/events", token=token,
                params={"since_seq": 0, "limit": 1000})
    assert r.status_code == 200, r.text
    assert not r.json()["has_more"]
    return [e["seq"] for e in r.json()["events"]]
