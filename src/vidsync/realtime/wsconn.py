"""A WebSocket after its handshake, served by a small asyncio protocol instead of aiohttp's objects.

aiohttp keeps a WebSocket's whole HTTP request alive for the connection's life: the parsed
request and its headers, the request handler and its parser, the ``WebSocketResponse`` with its
reader, writer and queue, and the suspended coroutines of the handler chain, about 16 KB per
connection (docs/benchmarks.md). Once the handshake is answered none of it is needed: this module
answers the handshake itself, moves the socket to ``WebSocketConnection`` and lets aiohttp forget
the connection. What is left per connection is this protocol object, the asyncio transport and
our ``Session``.

Only what a server needs of RFC 6455 is here: masked client frames, text messages (possibly
fragmented), ping, pong and close; no extensions. Outgoing frames are built by
``protocol.ws_text_frame`` and written straight to the transport by ``Session``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("vidsync.realtime")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009
# Messages received but not yet handled before we stop reading from the socket.
MAX_QUEUED = 64

Handler = Callable[[str], Awaitable[None]]


def accept_key(request: web.Request) -> bytes | None:
    """``Sec-WebSocket-Accept`` for a valid WebSocket upgrade request, or None if it is not one."""
    headers = request.headers
    if request.method != "GET" or request.version < (1, 1):
        return None
    if headers.get("Upgrade", "").lower() != "websocket":
        return None
    if "upgrade" not in headers.get("Connection", "").lower():
        return None
    if headers.get("Sec-WebSocket-Version") != "13":
        return None
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())


def close_frame(code: int) -> bytes:
    return bytes((0x88, 2)) + code.to_bytes(2, "big")


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class WebSocketConnection(asyncio.Protocol):
    """One WebSocket: parses client frames and hands each text message to ``handler``, one at a
    time and in order. No task exists while the client is quiet: one is started for a burst of
    messages and ends when they are handled."""

    __slots__ = ("transport", "handler", "on_lost", "max_payload", "_buf", "_frag", "_frag_len",
                 "_queue", "_task", "_paused", "closed")

    def __init__(self, handler: Handler, on_lost: Callable[[], None], max_payload: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.handler = handler
        self.on_lost = on_lost
        self.max_payload = max_payload
        self._buf = b""
        self._frag: list[bytes] | None = None  # a fragmented message's parts so far
        self._frag_len = 0
        self._queue: deque[str] | None = None  # messages waiting, while a task handles them
        self._task: asyncio.Future[None] | None = None  # that task (the loop keeps only weak refs)
        self._paused = False
        self.closed = False

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._buf = b""
        self._frag = None
        self.on_lost()

    def eof_received(self) -> bool:
        return False  # the client half-closed: close our side too

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos, end = 0, len(buf)
        while not self.closed and end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            opcode, length, head = b0 & 0x0F, b1 & 0x7F, 2
            if b0 & 0x70 or not b1 & 0x80:
                return self.fail(CLOSE_PROTOCOL, "reserved bits set or an unmasked frame")
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if opcode >= OP_CLOSE and (length > 125 or not b0 & 0x80):
                return self.fail(CLOSE_PROTOCOL, "a control frame too long or fragmented")
            if length + self._frag_len > self.max_payload:
                return self.fail(CLOSE_TOO_BIG, "message larger than the maximum payload")
            start = pos + head + 4
            if end - start < length:
                break
            payload = _unmask(buf[start:start + length], buf[pos + head:start])
            pos = start + length
            self._frame(bool(b0 & 0x80), opcode, payload)
        self._buf = buf[pos:] if not self.closed else b""

    # -- frames and messages ------------------------------------------------------------------------

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._write(bytes((0x8A, len(payload))) + payload)
        elif opcode == OP_PONG:
            pass
        elif opcode == OP_CLOSE:
            self.close(CLOSE_NORMAL)
        elif opcode == OP_CONT:
            if self._frag is None:
                self.fail(CLOSE_PROTOCOL, "a continuation frame with nothing to continue")
                return
            self._frag.append(payload)
            self._frag_len += len(payload)
            if fin:
                parts, self._frag, self._frag_len = self._frag, None, 0
                self._message(b"".join(parts))
        elif opcode == OP_TEXT:
            if self._frag is not None:
                self.fail(CLOSE_PROTOCOL, "a new message inside a fragmented one")
            elif fin:
                self._message(payload)
            else:
                self._frag, self._frag_len = [payload], len(payload)
        elif opcode == OP_BINARY:
            self.fail(CLOSE_DATA, "binary frames are not supported")
        else:
            self.fail(CLOSE_PROTOCOL, f"unknown opcode {opcode}")

    def _message(self, payload: bytes) -> None:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(CLOSE_DATA, "a text message that is not UTF-8")
            return
        if self._queue is not None:
            self._queue.append(text)
            if len(self._queue) >= MAX_QUEUED and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            return
        self._queue = deque((text,))
        self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        queue = self._queue
        assert queue is not None
        try:
            while queue and not self.closed:
                await self.handler(queue.popleft())
        except Exception:
            log.exception("error handling a WebSocket message")
            self.close(1011)
        finally:
            self._queue = self._task = None
            if self._paused and not self.closed and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()

    # -- sending and closing ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Send a close frame and close the socket once what is queued has been written."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(close_frame(code))
            self.transport.close()
        self.closed = True

    def fail(self, code: int, why: str) -> None:
        log.info("closing a WebSocket: %s", why)
        self.close(code)


def take_over(request: web.Request, conn: WebSocketConnection) -> bool:
    """Answer the WebSocket handshake of ``request`` and move its socket to ``conn``; aiohttp
    forgets the connection (its handler returns, its per-request objects are freed). False if
    the request is not a valid handshake or the client is already gone.

    It relies on two things aiohttp does: a request handler's ``request.protocol`` is the
    connection's protocol and stops using the socket once its ``transport`` is None, and its
    ``connection_lost`` drops it from the server's list of connections. A WebSocket client waits
    for the 101 before it sends anything, so no frame can be left behind in aiohttp's parser.
    """
    accept = accept_key(request)
    transport, protocol = request.transport, request.protocol
    if accept is None or transport is None or transport.is_closing():
        return False
    assert isinstance(transport, asyncio.Transport)
    transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    protocol.transport = None  # aiohttp must neither write to nor close it any more
    transport.set_protocol(conn)
    conn.connection_made(transport)
    protocol.connection_lost(None)
    transport.resume_reading()  # in case aiohttp had paused it
    return True
