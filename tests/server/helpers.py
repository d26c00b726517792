"""Helpers for the server tests: error checks, log paging, polling, and a recording Socket.IO client."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import socketio
from harness import Api, all_events, wait_until  # noqa: F401 - re-exported for the tests


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    """``r`` is the API's error shape with this status (and code); returns the error object."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


class _Loop:
    """One asyncio loop in a daemon thread, shared by every ``Listener``."""

    loop: asyncio.AbstractEventLoop | None = None
    lock = threading.Lock()

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls.lock:
            if cls.loop is None:
                cls.loop = asyncio.new_event_loop()
                threading.Thread(target=cls.loop.run_forever, daemon=True, name="listeners").start()
            return cls.loop

    @classmethod
    def stop(cls) -> None:
        """Cancel what is left on the loop and stop it: an Engine.IO client refused in the middle
        of its connect can keep a write loop that times out (and logs) after the run ends."""
        with cls.lock:
            loop, cls.loop = cls.loop, None
        if loop is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


def _run(coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, _Loop.get()).result(timeout)


class Listener:
    """A python-socketio client that records every server event with the time it arrived.

    It is the asyncio client, on a loop of its own thread: the threaded client hands each
    Engine.IO message to a new thread, so its handlers can see events out of the order they
    arrived in, and these tests check that order.
    """

    def __init__(self, url: str, token: str | None, transports: list[str] | None = None,
                 connect: bool = True) -> None:
        self.url = url
        self.token = token
        self.transports = transports
        self.sio: socketio.AsyncClient = _run(self._make_client())
        self.received: list[tuple[str, Any, float]] = []
        self.connect_errors: list[Any] = []
        self.disconnects: list[str] = []
        self._lock = threading.Lock()
        self.sio.on("*", self._on_any)
        self.sio.on("connect_error", self.connect_errors.append)
        self.sio.on("disconnect", self.disconnects.append)
        if connect:
            self.connect()

    @staticmethod
    async def _make_client() -> socketio.AsyncClient:
        return socketio.AsyncClient(reconnection=False)

    def connect(self) -> None:
        auth = {"token": self.token} if self.token is not None else None
        _run(self.sio.connect(self.url, auth=auth, transports=self.transports, wait_timeout=10))

    @property
    def connected(self) -> bool:
        return self.sio.connected

    def transport(self) -> str:
        return self.sio.transport()

    def _on_any(self, name: str, data: Any = None) -> None:
        with self._lock:
            self.received.append((name, data, time.monotonic()))

    def call(self, event: str, data: Any) -> Any:
        return _run(self.sio.call(event, data, timeout=10))

    def emit(self, event: str, data: Any, callback: Callable[..., Any] | None = None) -> None:
        """Send without waiting for an ack (``callback`` runs on the listeners' loop)."""
        _run(self.sio.emit(event, data, callback=callback))

    def subscribe(self, arg: Any) -> dict:
        return self.call("subscribe:project", arg)

    def named(self, name: str) -> list[Any]:
        with self._lock:
            return [d for n, d, _ in self.received if n == name]

    def seqs(self, project_id: str | None = None) -> list[int]:
        """Seqs of every event delivered, from ``project:event`` and ``project:events`` alike."""
        out = []
        with self._lock:
            for name, data, _ in self.received:
                if project_id is not None and isinstance(data, dict) \
                        and data.get("project_id") != project_id:
                    continue
                if name == "project:event":
                    out.append(data["seq"])
                elif name == "project:events":
                    out += [e["seq"] for e in data["events"]]
        return out

    def wait_seqs(self, count: int, project_id: str | None = None, timeout: float = 10) -> list[int]:
        wait_until(lambda: len(self.seqs(project_id)) >= count, timeout,
                   f"{count} events (have {len(self.seqs(project_id))})")
        return self.seqs(project_id)

    def close(self) -> None:
        if self.sio.connected:
            _run(self.sio.disconnect())
        elif self.sio.eio.state == "connected":
            _run(self.sio.eio.disconnect(abort=True))
