"""One Engine.IO session: a client connection, over long-polling, WebSocket, or one then the other.

Outgoing packets take one of two roads. Over WebSocket they are framed and written straight to the
socket's transport (no task, no await per packet); over polling they wait in a queue that the
client's next GET takes. Either way the amount waiting is bounded (``max_buffer``): a client that
stops reading is disconnected rather than allowed to grow the server's memory or hold back others.
It reconnects and resumes from the last seq it saw.

The kernel's share is bounded too: a WebSocket's send buffer is set to ``send_buffer`` (the kernel
doubles it), whatever ``max_buffer`` is, and a dropped slow consumer's connection is reset (RST),
not closed: a close would leave the socket in FIN-WAIT-1 holding its unsent megabytes for as long
as the client stays silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from vidsync.realtime import protocol

if TYPE_CHECKING:
    from vidsync.realtime.wsconn import WebSocketConnection
    from vidsync.store import User

log = logging.getLogger("vidsync.realtime")


# Default bound of the kernel's send buffer per WebSocket (SO_SNDBUF; Linux allots twice this).
KERNEL_SEND_BUFFER = 256 * 1024

# Packets per long-polling response: python-engineio's client drops the connection on a payload
# of more than 16 ("Too many packets in payload"); the rest waits for the next poll.
MAX_POLL_PACKETS = 16


def new_sid() -> str:
    return secrets.token_urlsafe(15)


class Session:
    """State of one client: transport, outgoing buffer, heartbeat, and Socket.IO login."""

    __slots__ = (
        "sid", "transport_name", "max_buffer", "send_buffer", "ws", "_transport", "_queue", "_queued_bytes",
        "_poll_waiter", "_drained", "last_seen", "ping_sent_at", "closed", "upgrading",
        "sio_sid", "user", "token_hash", "projects", "_on_close", "close_reason",
    )

    def __init__(self, max_buffer: int, on_close: Callable[[Session], None],
                 send_buffer: int = KERNEL_SEND_BUFFER) -> None:
        self.sid = new_sid()
        self.transport_name = "polling"
        self.max_buffer = max_buffer
        self.send_buffer = send_buffer
        self.ws: WebSocketConnection | None = None
        self._transport: asyncio.Transport | None = None
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._poll_waiter: asyncio.Future[None] | None = None
        # Made only when a replay over polling has to wait for the client (an Event per
        # connection would cost about 0.8 KB on each of thousands of WebSockets).
        self._drained: asyncio.Event | None = None
        self.last_seen = time.monotonic()
        self.ping_sent_at: float | None = None
        self.closed = False
        self.upgrading = False
        # Socket.IO: set once the client's CONNECT carried a valid token.
        self.sio_sid: str | None = None
        self.user: User | None = None
        self.token_hash: str | None = None
        self.projects: set[str] = set()
        self._on_close = on_close
        self.close_reason = ""

    # -- sending ----------------------------------------------------------------------------------

    def send(self, packet: bytes) -> None:
        """Send one Engine.IO packet."""
        if self._transport is not None:
            self.deliver(protocol.ws_text_frame(packet), (packet,))
        else:
            self.deliver(b"", (packet,))

    def deliver(self, frames: bytes, packets: tuple[bytes, ...] | list[bytes]) -> None:
        """Send packets already encoded: ``frames`` is their WebSocket framing, ``packets`` the
        bare packets for the polling queue. The hub builds both once for all subscribers."""
        if self.closed:
            return
        transport = self._transport
        if transport is not None:
            if transport.is_closing():
                self.close("transport closed")
                return
            transport.write(frames)
            if transport.get_write_buffer_size() > self.max_buffer:
                self.close("slow consumer: outgoing buffer over limit", abort=True)
            return
        self._queue.extend(packets)
        self._queued_bytes += sum(len(p) for p in packets)
        if self._queued_bytes > self.max_buffer:
            self.close("slow consumer: polling queue over limit")
            return
        self._wake_poller()

    async def send_with_backpressure(self, packets: list[bytes]) -> None:
        """Send many packets (a replay) without passing the buffer bound: written in chunks of
        a quarter of it, one write each, waiting for the client to read whenever half is used."""
        chunk_limit = max(self.max_buffer // 4, 1)
        start = 0
        while start < len(packets) and not self.closed:
            end, size = start + 1, len(packets[start])
            while end < len(packets) and size + len(packets[end]) <= chunk_limit:
                size += len(packets[end])
                end += 1
            chunk = packets[start:end]
            frames = b"".join(map(protocol.ws_text_frame, chunk)) if self._transport else b""
            self.deliver(frames, chunk)
            start = end
            await self.wait_writable()

    async def wait_writable(self) -> None:
        low_water = self.max_buffer // 2
        while not self.closed:
            if self._transport is not None:
                if self._transport.get_write_buffer_size() <= low_water:
                    return
                await asyncio.sleep(0.005)
            elif self._queued_bytes <= low_water:
                return
            else:
                if self._drained is None:
                    self._drained = asyncio.Event()
                self._drained.clear()
                await self._drained.wait()

    # -- polling ----------------------------------------------------------------------------------

    async def poll(self, timeout: float) -> bytes:
        """Body for a long-polling GET: what is queued, or wait for something (or a noop)."""
        if not self._queue and not self.closed:
            if self._poll_waiter is not None:
                raise web.HTTPBadRequest(text="overlapping polls")
            self._poll_waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._poll_waiter, timeout)
            except TimeoutError:
                pass
            finally:
                self._poll_waiter = None
        if self.closed and not self._queue:
            return protocol.CLOSE_PACKET
        packets, self._queue = self._queue[:MAX_POLL_PACKETS], self._queue[MAX_POLL_PACKETS:]
        self._queued_bytes -= sum(len(p) for p in packets)
        if not self._queue:
            self._signal_drained()
        return protocol.encode_payload(packets) if packets else protocol.NOOP_PACKET

    def _signal_drained(self) -> None:
        if self._drained is not None:
            self._drained.set()

    def _wake_poller(self) -> None:
        if self._poll_waiter is not None and not self._poll_waiter.done():
            self._poll_waiter.set_result(None)

    # -- WebSocket --------------------------------------------------------------------------------

    def attach_websocket(self, ws: WebSocketConnection) -> None:
        """Switch to WebSocket and flush what the polling queue held."""
        transport = ws.transport
        assert transport is not None
        self.ws = ws
        self._transport = transport
        self.transport_name = "websocket"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # The kernel's send buffer autotunes to megabytes (net.ipv4.tcp_wmem) that a stalled
            # client would fill unseen: bound it on its own, the bytes beyond it wait in our
            # buffer, where max_buffer counts them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        self.upgrading = False
        packets, self._queue, self._queued_bytes = self._queue, [], 0
        self._signal_drained()
        if packets:
            self.deliver(b"".join(protocol.ws_text_frame(p) for p in packets), packets)

    def nudge_poller(self) -> None:
        """During an upgrade: answer the pending poll with a noop so the client can switch."""
        if not self._queue:
            self._queue.append(protocol.NOOP_PACKET)
            self._queued_bytes += 1
        self._wake_poller()

    # -- lifecycle --------------------------------------------------------------------------------

    def touch(self) -> None:
        self.last_seen = time.monotonic()
        self.ping_sent_at = None

    def close(self, reason: str, abort: bool = False) -> None:
        """Close the session; ``abort`` drops the socket at once (its buffer is hopeless)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if reason.startswith("slow consumer"):
            log.warning("closing session %s: %s", self.sid, reason)
        transport = self._transport
        if transport is not None:
            if abort:
                reset(transport)
            else:
                if not transport.is_closing():
                    transport.write(protocol.ws_text_frame(protocol.CLOSE_PACKET))
                if self.ws is not None:
                    self.ws.close()
        self._wake_poller()
        self._signal_drained()
        self._on_close(self)


def reset(transport: asyncio.Transport) -> None:
    """Drop a connection with a TCP reset: the kernel frees its send queue at once. A plain close
    (asyncio's ``abort`` included) sends a FIN behind the queued data and keeps all of it until
    the peer reads it or the kernel gives up, minutes later."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
