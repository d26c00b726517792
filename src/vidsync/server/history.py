"""Version history and undelete, read from the event log; restore appends a new change.

The log already holds every version of every path (each create/update event names its content
by hash), so history is a query, not a second store. A version is ``available`` while its content
is still stored: the collector keeps it for ``--retention`` after it was replaced or deleted
(content/gc.py). Restoring never rewrites the log: it appends the change that brings the version
back, through the same path as ``files/update`` (content checks, Idempotency-Key, fan-out), so
every mirror applies it like any other edit.

A folder restore (``path`` ending in '/') makes the folder match what it held as of ``seq``:
files it held then come back at their version of then, and files created under it since are
deleted (they stay restorable from the history themselves). Everything is one batch.
"""

from __future__ import annotations

import asyncio
import hashlib

import orjson
from aiohttp import web

from vidsync.changes import Change
from vidsync.errors import ApiError, bad_request
from vidsync.jsonint import json_int
from vidsync.server.content import CONTENT
from vidsync.server.events import append_changes
from vidsync.server.http import (
    int_param,
    json_response,
    parse_target,
    read_json,
    require_role,
    require_writer,
    services,
)
from vidsync.store import Event
from vidsync.store.base import iso

DEFAULT_PAGE = 100
MAX_PAGE = 1000
# One folder restore is one batch, appended in one transaction: bounded like any request.
MAX_RESTORE_FILES = 10_000


def version_json(event: Event, available: bool) -> dict:
    c = event.change
    return {"seq": event.seq, "path": c.path, "op": c.op, "hash": c.hash, "size": c.size,
            "mtime": c.mtime, "author": event.author.to_json() if event.author else None,
            "created_at": iso(event.created_at),
            "available": available}


async def _available(request: web.Request, project_id: str, events: list[Event]) -> list[bool]:
    blobs = request.app[CONTENT].blobs

    def check() -> list[bool]:
        seen: dict[str, bool] = {}
        for e in events:
            h = e.change.hash
            if h is not None and h not in seen:
                seen[h] = blobs.has_manifest(project_id, h)
        return [e.change.hash is not None and seen[e.change.hash] for e in events]

    return await asyncio.to_thread(check)


async def get_history(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id)
    if "path" not in request.query:
        raise bad_request("'path' is required (a file, 'dir/' for a folder, '/' for all)",
                          code="invalid_path")
    path = parse_target(request.query["path"])
    before = int_param(request, "before_seq", 2**62, 1, 2**62)
    limit = int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    events = await services(request).store.history(project_id, path, before, limit + 1)
    events, has_more = events[:limit], len(events) > limit
    available = await _available(request, project_id, events)
    return json_response({"versions": [version_json(e, a) for e, a in zip(events, available,
                                                                            strict=True)],
                          "has_more": has_more})


async def get_deleted(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id)
    prefix = parse_target(request.query.get("prefix", "/"), "prefix")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    after = request.query.get("after", "")
    limit = int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    found = await services(request).store.deleted_files(project_id, prefix, after, limit + 1)
    found, has_more = found[:limit], len(found) > limit
    available = await _available(request, project_id, [d.last_version for d in found])
    return json_response({"files": [
        {"path": d.path, "deleted_seq": d.deleted_seq, "deleted_at": iso(d.deleted_at),
         "last_version": version_json(d.last_version, a)}
        for d, a in zip(found, available, strict=True)], "has_more": has_more})


async def restore(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_writer(request, project_id)
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"path", "seq"} or "path" not in body:
        raise bad_request("send {path, seq}", code="invalid_body")
    path = parse_target(body["path"])
    seq = json_int(body.get("seq"))
    if seq is None or not 1 <= seq <= 2**53:
        raise bad_request("'seq' must be a positive integer", code="invalid_seq")
    store = services(request).store
    if path == "" or path.endswith("/"):
        changes = await _folder_changes(request, project_id, path, seq)
    else:
        changes = await _file_changes(request, project_id, path, seq)
    if changes:
        gone = await asyncio.to_thread(request.app[CONTENT].blobs.keep, project_id,
                                       [c.hash for c in changes if c.hash])
        if gone:
            expired = sorted({c.path for c in changes if c.hash in set(gone)})
            raise ApiError(410, "expired", f"the content of {len(expired)} file(s) is no longer "
                           "kept (past the server's --retention)", paths=expired[:100])
    elif "Idempotency-Key" not in request.headers:  # already as asked: nothing to append
        return json_response({"results": [], "last_seq": await store.last_seq(project_id)})
    digest = hashlib.sha256(orjson.dumps({"restore": {"path": path, "seq": seq}})).hexdigest()
    return json_response(await append_changes(request, project_id, changes, digest))


async def _file_changes(request: web.Request, project_id: str, path: str,
                        seq: int) -> list[Change]:
    store = services(request).store
    found = await store.history(project_id, path, seq + 1, 1)
    if not found or found[0].seq != seq or found[0].change.hash is None:
        raise ApiError(404, "not_a_version", f"seq {seq} is not a version of {path!r} "
                       "(see files/history)")
    version = found[0].change
    latest = (await store.history(project_id, path, 2**62, 1))[0].change  # what it is now
    if latest.op != "delete" and (latest.hash, latest.size, latest.mtime) == (
            version.hash, version.size, version.mtime):
        return []
    return [Change(path, "create" if latest.op == "delete" else "update", version.hash,
                   version.size, version.mtime)]


async def _folder_changes(request: web.Request, project_id: str, prefix: str,
                          seq: int) -> list[Change]:
    store = services(request).store
    if seq > await store.last_seq(project_id):  # well-formed, but not a point in this log: 422
        raise ApiError(422, "invalid_seq", f"seq {seq} is past the end of the log")
    then = {f.path: f for f in await store.files_as_of(project_id, prefix, seq)}
    files, _ = await store.files(project_id, (prefix,) if prefix else ())
    live = {f.path: f for f in files}
    changes = []
    for path, f in then.items():
        now = live.get(path)
        if now is None or (now.hash, now.size, now.mtime) != (f.hash, f.size, f.mtime):
            changes.append(Change(path, "update" if now else "create", f.hash, f.size, f.mtime))
    changes += [Change(path, "delete", None, None, None) for path in live if path not in then]
    if len(changes) > MAX_RESTORE_FILES:
        raise ApiError(413, "too_many_changes", f"restoring this folder takes {len(changes)} "
                       f"changes; at most {MAX_RESTORE_FILES} in one restore (restore its "
                       "subfolders one by one)", limit=MAX_RESTORE_FILES)
    return changes


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/projects/{project_id}/files/history", get_history)
    r.add_get("/api/projects/{project_id}/files/deleted", get_deleted)
    r.add_post("/api/projects/{project_id}/files/restore", restore)
