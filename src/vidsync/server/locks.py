"""File locks: one writer per file while an editor works on it (an NLE project, a mix).

A lock is a lease. ``POST locks {path}`` takes it for ``--lock-ttl``; every node renews the locks
of the users it has live subscriptions for (their agent or browser is connected to the project),
so a lock lasts while its holder is connected and runs out ``--lock-ttl`` after they have gone.
Every node also sweeps the expired ones and announces each (the store hands each to one node).
The holder releases a lock, the owner can break any. A change to a path someone else holds is
refused with 423 ``locked`` in the appending transaction (``Store.append_events``).

Every lock change reaches every subscriber, on every node, as ``project:lock``; a subscriber gets
the project's locks as ``project:locks`` after subscribing (and after a backplane loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from vidsync.changes import normalize_path
from vidsync.errors import ApiError, bad_request, forbidden, not_found
from vidsync.server.http import (
    SERVICES,
    json_response,
    read_json,
    require_role,
    require_writer,
    services,
)
from vidsync.store import Lock
from vidsync.store.base import LockHeld, TooManyLocks, utcnow

if TYPE_CHECKING:
    from vidsync.server.app import Services

log = logging.getLogger("vidsync.locks")

MAX_LOCKS_PER_PROJECT = 10_000
# How often a node renews its holders' leases and sweeps expired ones: a fraction of the TTL, so
# a connected holder's lease never runs out between two renewals.
MAX_TICK_S = 15.0


def locked_error(lock: Lock) -> ApiError:
    return ApiError(409, "locked", f"{lock.path} is locked by {lock.user.name}",
                    lock=lock.to_json())


def _path(raw: object) -> str:
    try:
        return normalize_path(raw)
    except ValueError as e:
        raise bad_request(f"invalid path: {e}", code="invalid_path") from None


async def acquire(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    user, _ = await require_writer(request, project_id)
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"path"}:
        raise bad_request("body must be an object with a 'path' and nothing else",
                          code="invalid_body")
    path = _path(body.get("path"))
    svc = services(request)
    now = utcnow()
    try:
        lock, new = await svc.store.acquire_lock(
            project_id, path, user.author, now, now + timedelta(seconds=svc.config.lock_ttl_s),
            MAX_LOCKS_PER_PROJECT)
    except LockHeld as e:
        raise locked_error(e.lock) from None
    except TooManyLocks:
        raise ApiError(409, "too_many_locks", f"a project holds at most {MAX_LOCKS_PER_PROJECT}"
                       " locks") from None
    if new:
        svc.lock_changed(project_id, path, lock, "locked")
    return json_response({"lock": lock.to_json()}, status=201 if new else 200)


async def release(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    user, role = await require_role(request, project_id)
    if "path" not in request.query:
        raise bad_request("give the path: DELETE .../locks?path=<path>", code="invalid_path")
    path = _path(request.query["path"])
    svc = services(request)
    try:
        lock = await svc.store.release_lock(project_id, path, user.id, role == "owner", utcnow())
    except LockHeld as e:
        raise forbidden(f"{path} is locked by {e.lock.user.name}; only they or the project's"
                        " owner can unlock it") from None
    if lock is None:
        raise not_found(f"{path} is not locked")
    broken = lock.user.id != user.id
    svc.lock_changed(project_id, path, None, "broken" if broken else "released",
                     user.author if broken else None)
    return web.Response(status=204)


async def list_locks(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id)
    locks = await services(request).store.locks(project_id, utcnow())
    return json_response({"locks": [lock.to_json() for lock in locks]})


async def release_member_locks(svc: Services, project_id: str, user_id: str) -> None:
    """A member who left, or can no longer write, holds no lock."""
    for lock in await svc.store.release_member_locks(project_id, user_id):
        svc.lock_changed(project_id, lock.path, None, "member_left")


class LockLeases:
    """This node's part of the leases: renew its connected holders' locks, sweep expired ones."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.ttl_s = svc.config.lock_ttl_s
        self.tick_s = max(0.1, min(self.ttl_s / 4, MAX_TICK_S))
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.tick()
            except Exception:  # a database hiccup: try again next tick
                log.exception("lock leases: renew or sweep failed")

    async def tick(self) -> None:
        store, now = self.svc.store, utcnow()
        holders = self.svc.hub.subscribers()
        if holders:
            await store.renew_locks(holders, now + timedelta(seconds=self.ttl_s), now)
        for lock in await store.expire_locks(now):
            log.info("lock on %s in project %s expired", lock.path, lock.project_id)
            self.svc.lock_changed(lock.project_id, lock.path, None, "expired")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/projects/{project_id}/locks", acquire)
    r.add_get("/api/projects/{project_id}/locks", list_locks)
    r.add_delete("/api/projects/{project_id}/locks", release)
    leases = LockLeases(app[SERVICES])

    async def start(app: web.Application) -> None:
        leases.start()

    async def stop(app: web.Application) -> None:
        await leases.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
