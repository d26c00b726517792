"""``Follower``: a project's events, each exactly once and in seq order, whatever the network does.

Transport order: Socket.IO over WebSocket, then Socket.IO over HTTP long-polling, then plain HTTP
long-polling of ``/events?wait=`` when the server refuses Socket.IO (a proxy that strips upgrades,
``--no-websocket``); from the fallback it tries Socket.IO again after a while. A lost connection
is retried with exponential backoff and jitter, and every (re)subscription asks for the events
after the last seq handed out, so a restart or a cut costs a replay, never a gap.

The Socket.IO callbacks only append to an inbox (python-socketio runs them in arrival order);
the iterator does the rest: drops what it already handed out (seq <= ``seq``), and on a hole in
an unfiltered stream fetches the missing events over HTTP before going on. With a ``paths``
filter the seqs it receives are not consecutive, so holes cannot be seen; it then relies on the
server sending each subscription's events in order, and on resuming by seq after a reconnect.

python-socketio's own reconnection is off: a reconnect here must resubscribe from our seq and
may have to change transport, which its loop does not know about.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from vidsync.client.errors import ApiError, ProjectRemoved, ServerUnreachable

if TYPE_CHECKING:
    import socketio

    from vidsync.client.api import Client

log = logging.getLogger("vidsync.client")

# A Socket.IO connection that lasted this long was healthy: after it drops, reconnect at once.
STABLE_CONNECTION_S = 5.0


class ConnectionState(enum.StrEnum):
    """How a follower is currently getting events (for status displays)."""

    CONNECTING = "connecting"
    WEBSOCKET = "websocket"  # Socket.IO over WebSocket
    POLLING = "polling"  # Socket.IO over HTTP long-polling
    HTTP_FALLBACK = "http-fallback"  # no Socket.IO: long-polling GET /events?wait=
    RECONNECTING = "reconnecting"  # the server cannot be reached; retrying with backoff
    CLOSED = "closed"


class _Disconnected(Exception):
    """The Socket.IO connection ended; reconnect."""


class Follower:
    """Async iterator over a project's events after ``since_seq`` (see ``Client.follow``).

    ``seq`` is how far the log has been seen: every event up to it (that matches ``paths``) has
    been handed out. ``state`` is a ``ConnectionState``; ``on_state`` is called on every change.
    """

    def __init__(self, client: Client, project_id: str, since_seq: int,
                 paths: Sequence[str] | None = None, *,
                 transports: Sequence[str] = ("websocket", "polling"),
                 poll_wait_s: int = 25, page_limit: int = 1000,
                 retry_socket_after_s: float = 60.0, backoff_initial_s: float = 0.25,
                 backoff_max_s: float = 10.0, connect_timeout_s: float = 10.0,
                 max_inbox: int = 20_000,
                 on_state: Callable[[ConnectionState], None] | None = None,
                 on_upload: Callable[[dict], None] | None = None,
                 on_notice: Callable[[str, dict], None] | None = None,
                 notices: Sequence[str] = ("project:role",)) -> None:
        if since_seq < 0:
            raise ValueError("since_seq must be >= 0")
        self.client = client
        self.project_id = project_id
        self.seq = since_seq
        self.paths = list(paths) if paths else None
        self.transports = tuple(transports)
        self.poll_wait_s = poll_wait_s
        self.page_limit = page_limit
        self.retry_socket_after_s = retry_socket_after_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.max_inbox = max_inbox
        self.on_state = on_state
        # ``project:upload`` hints (over Socket.IO only; not events, never in the log).
        self.on_upload = on_upload
        # Socket.IO events outside the log (a role or a lock changed): handed to ``on_notice``
        # as they arrive, over Socket.IO only (long-polling ``/events`` carries the log alone).
        self.on_notice = on_notice
        self.notices = tuple(notices)
        self.state = ConnectionState.CONNECTING
        self._inbox: deque[tuple[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._sio: socketio.AsyncClient | None = None
        self._gen: AsyncIterator[dict] | None = None

    # -- public -------------------------------------------------------------------------------------

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> dict:
        if self._gen is None:
            self._gen = self._run()
        return await self._gen.__anext__()

    async def __aenter__(self) -> Follower:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop following; a pending ``__anext__`` ends with ``StopAsyncIteration``."""
        self._closed.set()
        self._wake.set()
        await self._disconnect()
        self._set_state(ConnectionState.CLOSED)

    # -- the loop -----------------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[dict]:
        failures = 0  # consecutive rounds in which nothing could be reached
        fallback_for = 1.0  # how long to stay on HTTP before trying Socket.IO again
        try:
            while not self._closed.is_set():
                transport = await self._connect_any()
                if transport is not None:
                    fallback_for = 1.0
                    connected_at = time.monotonic()
                    try:
                        async for event in self._consume_socket():
                            yield event
                    except (_Disconnected, ServerUnreachable) as e:
                        log.info("project %s: connection lost (%s)", self.project_id, e)
                    finally:
                        await self._disconnect()
                    if self._closed.is_set():
                        break
                    self._set_state(ConnectionState.RECONNECTING)
                    # A connection that lasted comes straight back (a node restarting behind a
                    # balancer, a backlog pause); one dropped at once must not spin.
                    if time.monotonic() - connected_at > STABLE_CONNECTION_S:
                        failures = 0
                    else:
                        failures += 1
                        await self._sleep(self._backoff(failures))
                    continue
                # Socket.IO is unavailable: is the server reachable at all?
                try:
                    async for event in self._poll_http(time.monotonic() + fallback_for):
                        yield event
                    fallback_for = min(fallback_for * 2, self.retry_socket_after_s)
                    failures = 0
                except ServerUnreachable as e:
                    failures += 1
                    self._set_state(ConnectionState.RECONNECTING)
                    delay = self._backoff(failures)
                    log.info("project %s: server unreachable (%s); retrying in %.1fs",
                             self.project_id, e, delay)
                    await self._sleep(delay)
        finally:
            await self._disconnect()

    def _backoff(self, failures: int) -> float:
        """Exponential with full jitter, so many agents do not reconnect in step."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(failures, 16))
        return random.uniform(self.backoff_initial_s, max(self.backoff_initial_s, ceiling))

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except TimeoutError:
            pass

    def _set_state(self, state: ConnectionState) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    # -- handing events out -------------------------------------------------------------------------

    async def _accept(self, events: list[dict], last_seq: int | None) -> AsyncIterator[dict]:
        """Hand out the events not handed out yet, filling holes of an unfiltered stream."""
        for event in events:
            seq = event.get("seq")
            if not isinstance(seq, int) or seq <= self.seq:
                continue
            if self.paths is None and seq > self.seq + 1:
                log.info("project %s: seq gap %d..%d, catching up over HTTP",
                         self.project_id, self.seq + 1, seq - 1)
                async for missed in self._catch_up(seq - 1):
                    yield missed
                if seq <= self.seq:
                    continue
            self.seq = seq
            yield event
        # With a filter the log may have moved past the last matching event.
        if self.paths is not None and last_seq is not None and last_seq > self.seq:
            self.seq = last_seq

    async def _catch_up(self, target: int) -> AsyncIterator[dict]:
        """Events after ``seq`` up to at least ``target``, over HTTP."""
        while self.seq < target:
            try:
                page = await self.client.events(self.project_id, self.seq, limit=self.page_limit,
                                                paths=self.paths)
            except ApiError as e:
                if e.status == 404:
                    raise ProjectRemoved(self.project_id, e.message) from None
                raise
            if not page["events"]:
                return  # the log does not reach target (cannot happen unless it was reset)
            async for event in self._accept(page["events"], None):
                yield event

    # -- Socket.IO ----------------------------------------------------------------------------------

    async def _connect_any(self) -> str | None:
        """Connect and subscribe over the first transport that works; None if none did."""
        # Imported here, not at the top: python-socketio (with engineio, requests and its Redis
        # manager) costs every CLI command 0.13 s of start-up, most of them never open a socket.
        import socketio

        for transport in self.transports:
            if self._closed.is_set():
                return None
            try:
                await self._connect(transport)
                return transport
            except (socketio.exceptions.ConnectionError, TimeoutError, OSError) as e:
                log.info("project %s: Socket.IO over %s failed: %s", self.project_id, transport, e)
                await self._disconnect()
        return None

    def _push(self, kind: str, data: Any, project_id: object = None) -> None:
        if project_id is not None and project_id != self.project_id:
            return
        self._inbox.append((kind, data))
        self._wake.set()

    async def _connect(self, transport: str) -> None:
        import socketio  # (see _connect_any)

        sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self._sio = sio
        connect_error: list[Any] = []
        me = self._push

        def on_event(data: dict) -> None:
            if isinstance(data, dict):
                me("events", ([data], None), data.get("project_id"))

        def on_events(data: dict) -> None:
            if isinstance(data, dict):
                me("events", (data.get("events") or [], data.get("last_seq")), data.get("project_id"))

        def on_seq(data: dict) -> None:
            if isinstance(data, dict):
                me("events", ([], data.get("last_seq")), data.get("project_id"))

        def on_removed(data: dict) -> None:
            if isinstance(data, dict):
                me("removed", data.get("reason") or "removed", data.get("project_id"))

        def on_disconnect(reason: object = None) -> None:
            if self._sio is sio:  # not a late notice from an earlier connection
                me("disconnected", str(reason))

        sio.on("project:event", on_event)
        sio.on("project:events", on_events)
        sio.on("project:seq", on_seq)
        sio.on("project:removed", on_removed)
        if self.on_upload is not None:
            on_upload = self.on_upload

            def on_upload_hint(data: dict) -> None:
                if isinstance(data, dict) and data.get("project_id") == self.project_id:
                    on_upload(data)

            sio.on("project:upload", on_upload_hint)
        sio.on("disconnect", on_disconnect)
        if self.on_notice is not None:
            for name in self.notices:
                sio.on(name, self._notice_handler(name))
        sio.on("connect_error", lambda data=None: connect_error.append(data))

        try:
            await sio.connect(self.client.base_url, auth={"token": self.client.token or ""},
                              transports=[transport], wait_timeout=self.connect_timeout_s)
        except socketio.exceptions.ConnectionError:
            err = connect_error[-1] if connect_error else None
            if isinstance(err, dict) and (err.get("message") == "unauthorized"
                                          or (err.get("data") or {}).get("code") == "unauthorized"):
                raise ApiError(401, "unauthorized", "the server refused the token") from None
            raise
        # The ack goes through the inbox too, so everything replayed before it is handled first.
        await sio.emit("subscribe:project",
                       {"projectId": self.project_id, "since_seq": self.seq, "batch": True,
                        **({"paths": self.paths} if self.paths else {})},
                       callback=lambda ack=None: me("subscribed", ack))
        self._set_state(ConnectionState.WEBSOCKET if sio.transport() == "websocket"
                        else ConnectionState.POLLING)

    def _notice_handler(self, name: str) -> Callable[..., None]:
        def handle(data: object = None) -> None:
            if (isinstance(data, dict) and data.get("project_id") in (None, self.project_id)
                    and self.on_notice is not None):
                self.on_notice(name, data)
        return handle

    async def _disconnect(self) -> None:
        sio, self._sio = self._sio, None
        if sio is not None:
            try:
                await sio.disconnect()
            except Exception as e:  # a connection that is already gone
                log.debug("disconnect: %r", e)

    async def _consume_socket(self) -> AsyncIterator[dict]:
        subscribed = False
        deadline = time.monotonic() + self.connect_timeout_s
        while not self._closed.is_set():
            if not subscribed and self._inbox:
                # A long replay comes before the ack: wait for the ack from the last message on.
                deadline = time.monotonic() + self.connect_timeout_s
            if not self._inbox:
                self._wake.clear()
                timeout = None if subscribed else max(0.0, deadline - time.monotonic())
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    raise _Disconnected("no answer to subscribe") from None
                continue
            if len(self._inbox) > self.max_inbox and self._sio is not None:
                # We read faster than the caller handles events: drop the connection rather than
                # buffer without bound, and resume by seq once the backlog is handled.
                log.info("project %s: %d events waiting; pausing the connection",
                         self.project_id, len(self._inbox))
                await self._disconnect()
                self._push("disconnected", "backlog")
            kind, data = self._inbox.popleft()
            if kind == "events":
                events, last_seq = data
                async for event in self._accept(events, last_seq):
                    yield event
            elif kind == "subscribed":
                subscribed = True
                self._check_ack(data)
                if self._sio is not None:  # after an upgrade the transport may have changed
                    self._set_state(ConnectionState.WEBSOCKET if self._sio.transport() == "websocket"
                                    else ConnectionState.POLLING)
            elif kind == "removed":
                raise ProjectRemoved(self.project_id, data)
            elif kind == "disconnected":
                raise _Disconnected(data)

    def _check_ack(self, ack: object) -> None:
        if isinstance(ack, dict) and ack.get("ok") is True:
            return
        err = ack.get("error") if isinstance(ack, dict) else None
        err = err if isinstance(err, dict) else {}
        if err.get("code") == "not_found":
            raise ProjectRemoved(self.project_id, str(err.get("message") or "not a member"))
        raise ApiError(400, str(err.get("code") or "subscribe_failed"),
                       str(err.get("message") or f"subscribe refused: {ack!r}"))

    # -- HTTP long-polling fallback -----------------------------------------------------------------

    async def _poll_http(self, until: float) -> AsyncIterator[dict]:
        """Long-poll ``/events`` until ``until`` (then Socket.IO is tried again)."""
        while not self._closed.is_set() and time.monotonic() < until:
            wait = max(1, min(self.poll_wait_s, int(until - time.monotonic()) + 1))
            poll = asyncio.ensure_future(self.client.events(
                self.project_id, self.seq, limit=self.page_limit, wait=wait, paths=self.paths))
            closing = asyncio.ensure_future(self._closed.wait())
            try:
                await asyncio.wait({poll, closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
                if not poll.done():
                    poll.cancel()
            if not poll.done() or poll.cancelled():
                return
            try:
                page = poll.result()
            except ApiError as e:
                if e.status == 404:
                    raise ProjectRemoved(self.project_id, e.message) from None
                if e.status >= 500:  # a proxy or a node in trouble: retry like a lost connection
                    raise ServerUnreachable(str(e)) from e
                raise
            self._set_state(ConnectionState.HTTP_FALLBACK)
            last_seq = None if page["has_more"] else page["last_seq"]
            async for event in self._accept(page["events"], last_seq):
                yield event
