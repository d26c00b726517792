"""Wiring: build the store, the hub, the Socket.IO endpoint and the HTTP routes into one app.

Everything a handler needs hangs off one ``Services`` object, stored on the app under
``SERVICES``; there are no globals. ``committed`` is the single path from a committed write to the
outside world: the local hub, the long-polling readers, and (when configured) other nodes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from vidsync.changes import Change
from vidsync.errors import ApiError
from vidsync.realtime.hub import Hub
from vidsync.realtime.transport import RealtimeServer
from vidsync.server import (
    auth,
    batch,
    content,
    cookies,
    events,
    gc,
    headers,
    health,
    history,
    locks,
    metrics,
    openapi,
    projects,
    static,
)
from vidsync.server.clientaddr import address_resolver, parse_networks
from vidsync.server.config import ServerConfig
from vidsync.server.events import LogWaiters
from vidsync.server.http import SERVICES, json_response
from vidsync.store import Author, Event, Lock, Store, open_store

if TYPE_CHECKING:
    from vidsync.realtime.backplane import RedisBackplane

log = logging.getLogger("vidsync.server")

ChangeCheck = Callable[[str, list[Change]], Awaitable[None]]


@dataclass
class Services:
    config: ServerConfig
    store: Store
    auth: auth.Auth
    hub: Hub
    realtime: RealtimeServer
    waiters: LogWaiters
    # Checks run on a batch before it is appended (e.g. "the content it names is stored").
    change_checks: list[ChangeCheck] = field(default_factory=list)
    # Called after a project is deleted (e.g. to remove its stored content).
    on_project_deleted: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)
    # Called with every batch this node commits (e.g. to publish it to other nodes).
    on_commit: list[Callable[[str, list[Event]], None]] = field(default_factory=list)
    # Called with every action other nodes must repeat: (method name, its keyword arguments).
    on_control: list[Callable[[str, dict], None]] = field(default_factory=list)
    # The link to other nodes, when configured (--redis); /readyz reports its health.
    backplane: RedisBackplane | None = None

    def committed(self, project_id: str, batch: list[Event], committed_at: float) -> None:
        """Events are durable: fan them out here and to anyone else who listens."""
        self.deliver(project_id, batch, committed_at)
        for hook in self.on_commit:
            hook(project_id, batch)

    def deliver(self, project_id: str, batch: list[Event], committed_at: float | None) -> None:
        """Hand committed events (from this node or another) to local subscribers."""
        self.hub.publish(project_id, batch, committed_at)
        self.waiters.wake(project_id)

    def end_subscriptions(self, project_id: str, reason: str, user_id: str | None = None) -> None:
        """End a member's (or everyone's) subscriptions to a project, on every node."""
        self.hub.end_subscriptions(project_id, reason, user_id)
        self._control("end_subscriptions",
                      {"project_id": project_id, "reason": reason, "user_id": user_id})

    def role_changed(self, project_id: str, user_id: str, role: str) -> None:
        """Tell a member's live subscriptions their new role (``project:role``), on every node:
        an agent demoted to viewer stops sending and says so."""
        self.hub.notify(project_id, "project:role",
                        {"project_id": project_id, "user_id": user_id, "role": role}, user_id)
        self._control("role_changed", {"project_id": project_id, "user_id": user_id,
                                       "role": role})

    def announce(self, project_id: str, name: str, payload: dict, path: str) -> None:
        """Send a message outside the log to the project's subscribers, on every node."""
        self.hub.notify(project_id, name, payload, path=path)
        self._control("announce", {"project_id": project_id, "name": name, "payload": payload,
                                   "path": path})

    def lock_changed(self, project_id: str, path: str, lock: Lock | None, reason: str,
                     by: Author | None = None) -> None:
        """A path was locked (``lock``) or unlocked (None; ``reason`` released, broken, expired
        or member_left; ``by`` who broke it): ``project:lock`` to every subscriber, every node."""
        data: dict = {"project_id": project_id, "path": path,
                      "lock": lock.to_json() if lock else None, "reason": reason}
        if by is not None:
            data["by"] = by.to_json()
        self.hub.notify(project_id, "project:lock", data)
        self._control("lock_changed", data)

    def disconnect_token(self, token_hash: str) -> None:
        """Disconnect a revoked token's sockets, on every node."""
        self.realtime.disconnect_token(token_hash)
        self._control("disconnect_token", {"token_hash": token_hash})

    def _control(self, kind: str, args: dict) -> None:
        for hook in self.on_control:
            hook(kind, args)


def origin_checker(config: ServerConfig) -> Callable[[web.Request], bool]:
    """Browsers may connect from the server's own origin or a configured one. Non-browser
    clients send no Origin and must still present a token."""
    allowed = {o.rstrip("/") for o in config.allowed_origins}

    def check(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        if origin in allowed:
            return True
        parts = urlsplit(origin)
        return parts.netloc == request.host

    return check


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        headers = {}
        if e.status == 429 and "retry_after_s" in e.extra:
            headers["Retry-After"] = str(e.extra["retry_after_s"])
        if e.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        response = json_response(e.to_json(), status=e.status)
        response.headers.update(headers)
        return response
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json" \
                or request.path.startswith("/socket.io/"):
            raise
        code = {404: "not_found", 405: "method_not_allowed",
                413: "payload_too_large"}.get(e.status, "http_error")
        message = {413: f"body larger than {request.app._client_max_size} bytes"}.get(
            e.status, e.reason)
        response = json_response({"error": {"code": code, "message": message}}, status=e.status)
        if e.status == 405 and "Allow" in e.headers:
            response.headers["Allow"] = e.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": {"code": "internal", "message": "internal error"}},
                             status=500)


def websocket_passthrough(realtime: RealtimeServer) -> Callable:
    """Hand Socket.IO WebSocket upgrades straight to the realtime server, outermost.

    A WebSocket's request lives as long as the connection, and so does every middleware frame
    wrapped around it: skipping them saves about 2 KB per connection (docs/benchmarks.md). None
    of them applies there: CORS does not govern WebSockets (the Origin is checked in the
    handshake), errors are Engine.IO's own, and request metrics skip WebSockets.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path == "/socket.io/" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await realtime.handle(request)
        return await handler(request)

    return middleware


def cors_middleware(config: ServerConfig) -> Callable:
    """CORS for configured origins only; bearer tokens, never cookies, so no credentials."""
    allowed = {o.rstrip("/") for o in config.allowed_origins}

    @web.middleware
    async def middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        cors = origin is not None and origin in allowed
        if cors and request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204, headers={
                "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, Range",
                "Access-Control-Max-Age": "600"})
        else:
            response = await handler(request)
        if cors:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return middleware


async def build_app(config: ServerConfig, store: Store | None = None) -> web.Application:
    """The whole server as an aiohttp app; the store is opened here unless given."""
    if store is None:
        store = await open_store(config.database_url)
    hub = Hub(store)
    authn = auth.Auth(store, config.token_ttl_s, config.login_attempts, config.login_window_s,
                      address_resolver(parse_networks(config.trusted_proxies)))
    realtime = RealtimeServer(store, hub, authn.authenticate, origin_checker(config),
                              config.realtime, cookies.cookie_token)
    svc = Services(config, store, authn, hub, realtime, LogWaiters())

    app = web.Application(client_max_size=config.max_json_body,
                          middlewares=[cors_middleware(config), errors_middleware])
    app[SERVICES] = svc
    auth.add_routes(app)
    projects.add_routes(app)
    events.add_routes(app)
    content.setup(app)
    batch.setup(app)
    history.add_routes(app)
    locks.setup(app)
    openapi.add_routes(app)
    app.router.add_route("*", "/socket.io/", realtime.handle)
    app.router.add_get("/healthz", healthz)
    health.add_routes(app)
    gc.install(app, metrics.install(app, svc).registry)
    if config.redis:
        from vidsync.realtime.backplane import RedisBackplane  # redis is an optional dependency

        svc.backplane = RedisBackplane(config.redis, svc)
        svc.backplane.install(app)
    static.add_routes(app)
    headers.install(app)

    async def on_startup(app: web.Application) -> None:
        realtime.start()
        log.info("vidsync listening", extra={"port": config.port, "store": type(store).__name__})

    async def on_shutdown(app: web.Application) -> None:
        svc.waiters.close()
        await realtime.stop()
        asyncio.ensure_future(_report_slow_shutdown())

    async def _report_slow_shutdown() -> None:
        """If requests still hold the shutdown after a few seconds, say which (an operator's
        first question when a SIGTERM takes the whole grace period)."""
        await asyncio.sleep(1.5)  # well inside --shutdown-grace (3 s by default)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            log.warning("shutdown still waiting on %s", task.get_coro().__qualname__,
                        extra={"awaiting": _await_chain(task.get_coro())})

    async def on_cleanup(app: web.Application) -> None:
        await store.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    app.middlewares.insert(0, websocket_passthrough(realtime))
    return app


def _await_chain(coro: object) -> str:
    """Where a suspended coroutine waits: each coroutine it awaits, innermost last."""
    steps = []
    while coro is not None and len(steps) < 30:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:  # not a coroutine: the future (or other awaitable) at the bottom
            steps.append(repr(coro)[:200])
            break
        steps.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return " -> ".join(steps)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"ok": True, "time": time.time()})
