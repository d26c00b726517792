"""The event log over HTTP: post a batch of changes, read events since a seq, list live files.

``files/update`` appends the whole batch in one transaction (each change one event, consecutive
seqs), only then hands the events to the fan-out, and answers once they are written to this
node's subscribers (so a poster paces itself to its project's fan-out). ``/events?wait=S`` is the
long-polling fallback: it parks until the project's log moves past ``since_seq`` or S seconds pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import defaultdict

import orjson
from aiohttp import web

from vidsync.changes import Change, normalize_prefixes, parse_bases, parse_changes
from vidsync.errors import ApiError, bad_request
from vidsync.server.http import (
    MAX_QUERY_INT,
    int_param,
    json_response,
    not_writer,
    parse_target,
    read_json,
    require_role,
    require_writer,
    services,
)
from vidsync.store import IdempotencyMismatch
from vidsync.store.base import Conflict, Locked, NotWriter, utcnow

MAX_EVENTS_PAGE = 1000
MAX_WAIT_S = 60
MAX_IDEMPOTENCY_KEY = 200


class LogWaiters:
    """Long-polling readers parked per project, woken when its log grows."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        # Set at shutdown: parked readers answer at once instead of holding the shutdown up.
        self.closed = False

    async def wait(self, project_id: str, timeout: float) -> None:
        if self.closed:
            return
        fut = asyncio.get_running_loop().create_future()
        waiters = self._waiters[project_id]
        waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            waiters.discard(fut)
            if not waiters:
                self._waiters.pop(project_id, None)

    def wake(self, project_id: str) -> None:
        for fut in self._waiters.get(project_id, ()):
            if not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        self.closed = True
        for project_id in list(self._waiters):
            self.wake(project_id)


def _prefixes(request: web.Request) -> tuple[str, ...]:
    raw = request.query.get("paths")
    if not raw:
        return ()
    return normalize_prefixes([p for p in raw.split(",") if p])


async def post_changes(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_writer(request, project_id)
    body = await read_json(request)
    changes = parse_changes(body)
    bases = parse_bases(body)
    signed = [c.to_json() for c in changes]
    for i, base in bases.items():  # a different base is a different request
        signed[i]["base"] = base
    digest = hashlib.sha256(orjson.dumps(signed)).hexdigest()
    return json_response(await append_changes(request, project_id, changes, digest, bases))


async def append_changes(request: web.Request, project_id: str, changes: list[Change],
                         digest: str, bases: dict[int, str | None] | None = None) -> dict:
    """The one way a change enters the log: the request's Idempotency-Key checked, the change
    checks run (content stored), the batch appended as the caller's (its events' ``author``)
    and handed to the fan-out. ``digest`` identifies the request, so a retry with the same key
    is answered from the first time. ``bases`` (index -> hash or None) makes changes
    conditional: 409 ``conflict`` when a path moved on; a change to a path someone else has
    locked is 423 ``locked``. The caller must have passed
    ``require_writer``; the store checks the role again in the append's transaction."""
    svc = services(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY
                                and all(" " <= c <= "~" for c in key)):
        raise bad_request(f"'Idempotency-Key' must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII "
                          "characters", code="invalid_idempotency_key")
    for check in svc.change_checks:
        await check(project_id, changes)
    try:
        result = await svc.store.append_events(project_id, changes, utcnow(), key, digest,
                                               author=request["user"].author, bases=bases)
    except IdempotencyMismatch:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was used for a different request") from None
    except NotWriter:
        raise not_writer() from None
    except Locked as e:
        raise ApiError(423, "locked", f"{len(e.locked)} change(s) touch files someone else has"
                       " locked; nothing was appended", locks=[
                           {"index": i, "path": path, "lock": lock.to_json()}
                           for i, path, lock in e.locked]) from None
    except Conflict as e:
        raise ApiError(409, "conflict", f"{len(e.conflicts)} change(s) were made from a version"
                       " that is no longer current; nothing was appended", beside={
                           "conflicts": [{"index": i, "path": path, "current": state.to_json()}
                                         for i, path, state in e.conflicts]}) from None
    if result.events:
        svc.committed(project_id, result.events, time.monotonic())
        await svc.hub.written(project_id)
    return result.response


async def get_events(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id)
    svc = services(request)
    since_seq = int_param(request, "since_seq", 0, 0, MAX_QUERY_INT)
    limit = int_param(request, "limit", 100, 1, MAX_EVENTS_PAGE)
    wait = int_param(request, "wait", 0, 0, MAX_WAIT_S)
    prefixes = _prefixes(request)
    deadline = time.monotonic() + wait
    while True:
        events, last_seq, has_more = await svc.store.events_since(
            project_id, since_seq, limit, prefixes)
        remaining = deadline - time.monotonic()
        # With a path filter the log may move without a matching event: report the position.
        if events or last_seq > since_seq or remaining <= 0 or svc.waiters.closed:
            break
        await svc.waiters.wait(project_id, remaining)
    return json_response({"events": [e.to_json() for e in events], "last_seq": last_seq,
                          "has_more": has_more})


async def get_files(request: web.Request) -> web.Response:
    """Every live file, or with ``dir`` one level of them: the files directly in that folder and
    its folders with their totals, so a page can show a large project a folder at a time."""
    project_id = request.match_info["project_id"]
    await require_role(request, project_id)
    store = services(request).store
    prefixes = _prefixes(request)
    raw_dir = request.query.get("dir")
    if raw_dir is None:
        files, seq = await store.files(project_id, prefixes)
        return json_response({"files": [f.to_json() for f in files], "seq": seq})
    folder = parse_target(raw_dir, "dir")
    if folder and not folder.endswith("/"):
        folder += "/"
    files, folders, seq = await store.folder(project_id, folder, prefixes)
    return json_response({"files": [f.to_json() for f in files],
                          "folders": [f.to_json() for f in folders], "seq": seq})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/projects/{project_id}/files/update", post_changes)
    r.add_get("/api/projects/{project_id}/events", get_events)
    r.add_get("/api/projects/{project_id}/files", get_files)
