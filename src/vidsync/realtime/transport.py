"""``/socket.io/``: Engine.IO's HTTP long-polling and WebSocket transports on aiohttp, and the
Socket.IO layer on top (login with a token, ``subscribe:project``, ``unsubscribe:project``).

One heartbeat task pings every session (one frame, encoded once) instead of a timer per
connection, and closes the sessions that did not answer the previous ping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from vidsync.changes import normalize_prefixes
from vidsync.errors import ApiError
from vidsync.realtime import protocol
from vidsync.realtime.hub import Hub
from vidsync.realtime.session import KERNEL_SEND_BUFFER, Session
from vidsync.realtime.wsconn import WebSocketConnection, accept_key, take_over
from vidsync.store import Store, User
from vidsync.store.base import utcnow

log = logging.getLogger("vidsync.realtime")

# authenticate(token) -> (user, token_hash) or None
Authenticator = Callable[[str], Awaitable[tuple[User, str] | None]]
OriginCheck = Callable[[web.Request], bool]
# The token a handshake request carries besides the CONNECT packet (the web UI's session cookie)
HandshakeToken = Callable[[web.Request], str | None]


@dataclass(frozen=True)
class RealtimeConfig:
    ping_interval_s: float = 25.0
    ping_timeout_s: float = 20.0
    max_payload: int = 1_000_000
    # Outgoing bytes a client may leave unread before it is dropped as a slow consumer.
    max_buffer: int = 4 * 1024 * 1024
    # SO_SNDBUF of each WebSocket: the kernel's share of the unread bytes, bounded apart.
    send_buffer: int = KERNEL_SEND_BUFFER
    websocket: bool = True


class EngineError(web.HTTPBadRequest):
    """An Engine.IO-level error, in the JSON shape Engine.IO clients expect."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(body=orjson.dumps({"code": code, "message": message}),
                         content_type="application/json")
        self.set_status(status)


class RealtimeServer:
    def __init__(self, store: Store, hub: Hub, authenticate: Authenticator,
                 origin_allowed: OriginCheck, config: RealtimeConfig,
                 handshake_token: HandshakeToken = lambda request: None) -> None:
        self.store = store
        self.hub = hub
        self.authenticate = authenticate
        self.origin_allowed = origin_allowed
        self.handshake_token = handshake_token
        # sid -> the token its handshake request carried, for a CONNECT without one. Only
        # browser sessions have an entry, so other connections pay nothing for it.
        self._handshake_tokens: dict[str, str] = {}
        self.config = config
        self.sessions: dict[str, Session] = {}
        self._heartbeat: asyncio.Task | None = None
        # Set by stop(): from then on no session is opened and no poll parks, so a client
        # still talking on a kept-alive connection cannot hold the shutdown for its grace period.
        self.stopping = False
        # Told of every closed session (e.g. to count slow consumers dropped).
        self.on_session_closed: list[Callable[[Session], None]] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._heartbeat = asyncio.ensure_future(self._heartbeat_loop())

    async def stop(self) -> None:
        self.stopping = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        for session in list(self.sessions.values()):
            session.close("server shutting down")

    async def _heartbeat_loop(self) -> None:
        frame = protocol.ws_text_frame(protocol.PING_PACKET)
        ping = (protocol.PING_PACKET,)
        while True:
            await asyncio.sleep(self.config.ping_interval_s)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.ping_sent_at is not None and \
                        now - session.ping_sent_at > self.config.ping_timeout_s:
                    session.close("ping timeout")
                    continue
                if session.ping_sent_at is None:
                    session.ping_sent_at = now
                    session.deliver(frame, ping)

    def _new_session(self, request: web.Request) -> Session:
        session = Session(self.config.max_buffer, self._session_closed, self.config.send_buffer)
        self.sessions[session.sid] = session
        token = self.handshake_token(request)
        if token:
            self._handshake_tokens[session.sid] = token
        return session

    def _session_closed(self, session: Session) -> None:
        self.sessions.pop(session.sid, None)
        self._handshake_tokens.pop(session.sid, None)
        self.hub.drop_session(session)
        for hook in self.on_session_closed:
            hook(session)

    def sessions_of_token(self, token_hash: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.token_hash == token_hash]

    def disconnect_token(self, token_hash: str) -> None:
        """A revoked token: tell its sockets the server disconnected them, then close. One still
        connecting (its CONNECT not answered yet) is refused instead, as a client expects."""
        for session in self.sessions_of_token(token_hash):
            if session.sio_sid is None:
                session.send(protocol.connect_error_packet(
                    "unauthorized", {"code": "unauthorized", "message": "token revoked"}))
            else:
                session.send(protocol.DISCONNECT_PACKET)
            session.close("token revoked")

    # -- HTTP entry point ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.stopping:
            raise EngineError(3, "Server shutting down", status=503)
        if request.query.get("EIO") != "4":
            raise EngineError(5, "Unsupported protocol version")
        if not self.origin_allowed(request):
            raise EngineError(4, "Origin not allowed", status=403)
        transport = request.query.get("transport")
        sid = request.query.get("sid")
        if transport == "websocket":
            if not self.config.websocket:
                raise EngineError(3, "WebSocket transport is disabled on this server")
            return await self._websocket(request, sid)
        if transport != "polling":
            raise EngineError(0, "Transport unknown")
        if sid is None:
            if request.method != "GET":
                raise EngineError(2, "Bad handshake method")
            session = self._new_session(request)
            return self._text(self._open_packet(session, upgrades=self.config.websocket))
        session = self.sessions.get(sid)
        if session is None:
            raise EngineError(1, "Session ID unknown")
        if session.transport_name != "polling":
            raise EngineError(3, "Bad request: session is on another transport")
        if request.method == "GET":
            body = await session.poll(self.config.ping_interval_s + 5)
            return self._text(body)
        if request.method == "POST":
            if request.content_length and request.content_length > self.config.max_payload:
                session.close("payload too large")
                raise EngineError(3, "Payload too large", status=413)
            raw = await request.content.read(self.config.max_payload + 1)
            if len(raw) > self.config.max_payload:
                session.close("payload too large")
                raise EngineError(3, "Payload too large", status=413)
            try:
                packets = protocol.decode_payload(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise EngineError(3, "Bad request: payload is not UTF-8") from None
            for packet in packets:
                await self._on_packet(session, packet)
            return self._text(b"ok")
        raise EngineError(2, "Bad method")

    def _text(self, body: bytes) -> web.Response:
        return web.Response(body=body, content_type="text/plain", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    def _open_packet(self, session: Session, upgrades: bool) -> bytes:
        return protocol.open_packet(
            session.sid, int(self.config.ping_interval_s * 1000),
            int(self.config.ping_timeout_s * 1000), self.config.max_payload,
            ["websocket"] if upgrades else [])

    async def _websocket(self, request: web.Request, sid: str | None) -> web.StreamResponse:
        """Answer the handshake and move the socket to a ``WebSocketConnection`` (wsconn.py):
        from then on aiohttp holds nothing for this connection."""
        upgrading = None
        if sid is not None:
            upgrading = self.sessions.get(sid)
            if upgrading is None:
                raise EngineError(1, "Session ID unknown")
            if upgrading.transport_name != "polling" or upgrading.upgrading:
                raise EngineError(3, "Bad request: session already upgraded")
        if accept_key(request) is None:
            raise EngineError(3, "Bad request: not a WebSocket handshake")
        if upgrading is None:
            session = self._new_session(request)
            conn = WebSocketConnection(partial(self._on_packet, session),
                                       partial(session.close, "transport closed"),
                                       self.config.max_payload)
            if not take_over(request, conn):
                session.close("transport closed")
                return web.Response(status=400)
            session.attach_websocket(conn)
            session.send(self._open_packet(session, upgrades=False))
        else:
            conn = WebSocketConnection(_noop, _nothing, self.config.max_payload)
            conn.handler = _Upgrade(self, upgrading, conn).on_message
            if not take_over(request, conn):
                upgrading.upgrading = False
                return web.Response(status=400)
        # The connection is no longer aiohttp's: this response is never sent, only logged.
        return web.Response(status=101)

    # -- Engine.IO and Socket.IO packets -----------------------------------------------------------
    # -- Engine.IO and Socket.IO packets -----------------------------------------------------------

    async def _on_packet(self, session: Session, packet: str) -> None:
        if session.closed or not packet:
            return
        session.last_seen = time.monotonic()
        kind = packet[0]
        if kind == protocol.EIO_PONG:
            session.touch()
        elif kind == protocol.EIO_MESSAGE:
            session.touch()
            try:
                await self._on_sio(session, protocol.decode_sio(packet[1:]))
            except protocol.ProtocolError as e:
                log.info("session %s: protocol error: %s", session.sid, e)
                session.close(f"protocol error: {e}")
        elif kind == protocol.EIO_CLOSE:
            session.close("client closed")
        elif kind == protocol.EIO_PING:  # a v3-style client ping: answer it
            session.send(protocol.EIO_PONG.encode() + packet[1:].encode())
        # noop, upgrade out of turn: nothing to do

    async def _on_sio(self, session: Session, packet: protocol.SioPacket) -> None:
        if packet.namespace != "/":
            session.send(protocol.connect_error_packet("Invalid namespace")
                         .replace(b"44", b"44" + packet.namespace.encode() + b",", 1))
            return
        if packet.type == protocol.SIO_CONNECT:
            await self._on_connect(session, packet.data)
        elif session.user is None:
            raise protocol.ProtocolError("a packet arrived before CONNECT")
        elif packet.type == protocol.SIO_EVENT:
            await self._on_event(session, packet.data[0], packet.data[1:], packet.ack_id)
        elif packet.type == protocol.SIO_DISCONNECT:
            self.hub.drop_session(session)
            session.user = None
            session.sio_sid = None

    async def _on_connect(self, session: Session, auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not token:
            token = self._handshake_tokens.get(session.sid)
        found = await self.authenticate(token) if isinstance(token, str) and token else None
        if found is not None:
            # Mark the session as the token's, then check again: a logout committed before the
            # second check is seen by it, one committed after finds this session to disconnect.
            session.user, session.token_hash = found
            if await self.authenticate(token) is None:
                session.user = session.token_hash = None
                found = None
        if found is None:
            message = "missing auth token" if not token else "invalid or expired token"
            session.send(protocol.connect_error_packet(
                "unauthorized", {"code": "unauthorized", "message": message}))
            return
        session.sio_sid = secrets.token_urlsafe(15)
        session.send(protocol.connect_packet(session.sio_sid))

    async def _on_event(self, session: Session, name: str, args: list[Any],
                        ack_id: int | None) -> None:
        then: Callable[[], None] | None = None  # what follows the ack
        try:
            if name == "subscribe:project":
                result, then = await self._subscribe(session, args[0] if args else None)
            elif name == "unsubscribe:project":
                project_id = _project_id(args[0] if args else None)
                self.hub.unsubscribe(session, project_id)
                result = {"ok": True, "project_id": project_id}
            else:
                raise ApiError(400, "unknown_event", f"unknown event {name!r}")
        except ApiError as e:
            result = {"ok": False, **e.to_json()}
        if ack_id is not None and not session.closed:
            session.send(protocol.ack_packet(ack_id, result))
        if then is not None:
            then()

    async def _subscribe(self, session: Session, arg: Any) -> tuple[dict, Callable[[], None]]:
        assert session.user is not None
        project_id = _project_id(arg)
        since_seq = None
        prefixes: tuple[str, ...] = ()
        batch = False
        if isinstance(arg, dict):
            since_seq = arg.get("since_seq")
            if since_seq is not None and (isinstance(since_seq, bool)
                                          or not isinstance(since_seq, int) or since_seq < 0):
                raise ApiError(400, "invalid_since_seq", "since_seq must be an integer >= 0")
            paths = arg.get("paths")
            if paths is not None and not (isinstance(paths, list)
                                          and all(isinstance(p, str) for p in paths)):
                raise ApiError(400, "invalid_paths", "paths must be a list of strings")
            prefixes = normalize_prefixes(paths)
            batch = arg.get("batch") is True
        user_id = session.user.id

        async def is_member() -> bool:
            return await self.store.role_of(project_id, user_id) is not None

        last_seq = await self.hub.subscribe(session, project_id, user_id, since_seq, prefixes,
                                            batch, is_member, hold_notices=True)
        if last_seq is None:
            raise ApiError(404, "not_found", "no such project, or you are not a member")
        # After the replay and the ack, the project's locks as they are now (read once the
        # subscription is in the channel, so no lock change is missed; any made since follow).
        locks = await self.store.locks(project_id, utcnow())
        snapshot = protocol.event_packet("project:locks", {
            "project_id": project_id, "locks": [lock.to_json() for lock in locks]})
        return ({"ok": True, "project_id": project_id, "last_seq": last_seq},
                lambda: self.hub.release_notices(session, project_id, snapshot))


def _project_id(arg: Any) -> str:
    project_id = arg.get("projectId", arg.get("project_id")) if isinstance(arg, dict) else arg
    if not isinstance(project_id, str) or not project_id or len(project_id) > 100:
        raise ApiError(400, "invalid_project_id", "expected a project id or {projectId}")
    return project_id


class _Upgrade:
    """Engine.IO upgrade on a new WebSocket: ``2probe``/``3probe``, a noop to release the pending
    poll, then the client's ``5`` moves the session over. Anything else, or nothing within the
    ping timeout, drops the new socket and leaves the session on polling."""

    def __init__(self, server: RealtimeServer, session: Session, conn: WebSocketConnection) -> None:
        self.server, self.session, self.conn = server, session, conn
        self.probed = False
        session.upgrading = True
        self.timer = asyncio.get_running_loop().call_later(
            server.config.ping_timeout_s, self.fail)
        conn.on_lost = self.fail

    def fail(self) -> None:
        self.timer.cancel()
        self.session.upgrading = False
        self.conn.close()

    async def on_message(self, text: str) -> None:
        session, conn = self.session, self.conn
        if not self.probed and text == "2probe":
            self.probed = True
            assert conn.transport is not None
            conn.transport.write(protocol.ws_text_frame(b"3probe"))
            session.nudge_poller()
        elif self.probed and text == protocol.EIO_UPGRADE and not session.closed:
            self.timer.cancel()
            session.upgrading = False
            conn.handler = partial(self.server._on_packet, session)
            conn.on_lost = partial(session.close, "transport closed")
            session.attach_websocket(conn)
        else:
            self.fail()


async def _noop(text: str) -> None:
    return None


def _nothing() -> None:
    return None
