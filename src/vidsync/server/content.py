"""The content store over HTTP: blocks, manifests, whole files with ranges, and download links.

Owners upload; members download. A file is served by streaming its blocks in order, so ranges
are computed here over the concatenation (aiohttp's ``FileResponse`` does ranges only for one file,
and its errors are not this API's JSON; blocks use the same code for one consistent behaviour).
Content is sent as ``application/octet-stream`` with ``nosniff`` and a sandboxing CSP: it is
whatever the owner put in the folder, and must never run as a page on the app's origin. The one
exception is a link made to play a file in the page (``inline``): for the audio and video types of
``vidsync.content.media``'s allow-list only, it carries that media type (still ``nosniff``,
sandboxed, and same-origin only), so a ``<video>`` can play it and seek with ranges.

The change check registered in ``Services.change_checks`` is what keeps the promise that no
event points at content the server does not have.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import BinaryIO
from urllib.parse import quote

from aiohttp import web
from aiohttp.web_log import AccessLogger

from vidsync.changes import Change, normalize_path, normalize_prefixes
from vidsync.content.blobstore import (
    USAGE_TTL_S,
    BlobStore,
    QuotaExceeded,
    TooLarge,
    is_implied,
)
from vidsync.content.blocks import (
    MAX_BLOCK_SIZE,
    BlockRef,
    InconsistentManifest,
    Manifest,
    is_hash,
)
from vidsync.content.config import ContentConfig
from vidsync.content.gc import Collector, Usage
from vidsync.content.links import (
    DEFAULT_TTL_S,
    MAX_TTL_S,
    ExpiredLink,
    InvalidLink,
    LinkGrant,
    LinkSigner,
    load_secret,
)
from vidsync.content.media import PosterMaker, media_type
from vidsync.content.pending import Pending, PendingUploads
from vidsync.content.zipstream import ZipEntry, write_zip
from vidsync.errors import ApiError, bad_request, not_found
from vidsync.jsonint import json_int
from vidsync.server.http import (
    SERVICES,
    json_response,
    read_json,
    require_role,
    require_writer,
    services,
)
from vidsync.store import FileEntry, Store
from vidsync.store.base import iso

MAX_CHECK_HASHES = 10_000
DOWNLOAD_PATH = "/api/download/"
POSTER_SUFFIX = "/poster"
STREAM_CHUNK = 1024 * 1024
CONTENT_HEADERS = {
    "Content-Type": "application/octet-stream",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
    "Accept-Ranges": "bytes",
}


# What a manifest post waits for the in-order hash at most before looking again for a block that
# vanished meanwhile (the wait itself has no bound: hashing tens of GB takes minutes).
DIGEST_RECHECK_S = 5.0
# ``project:upload`` progress goes out at most this often per upload (plus start and end).
ANNOUNCE_EVERY_S = 0.05

Announce = Callable[[str, str, dict, str], None]  # (project_id, event name, payload, path)


class ContentService:
    def __init__(self, config: ContentConfig, data_dir: str,
                 announce: Announce | None = None) -> None:
        self.config = config
        self.blobs = BlobStore(config.blob_dir or os.path.join(data_dir, "blobs"),
                               config.project_quota, config.gc_grace_s)
        self.signer = LinkSigner(load_secret(data_dir))
        self.posters = PosterMaker(self.blobs)
        self._sizes: dict[tuple[str, str], int] = {}
        self.collector: Collector | None = None  # set by setup, which has the store
        # The last usage measured per project (by a collection or on demand).
        self.usages: dict[str, Usage] = {}
        self.pending = PendingUploads(self.blobs.read_block, self._progress,
                                      self.blobs.save_states)
        # Bytes of uploads whose whole-file hash resumed from saved states (``/metrics``).
        self.hash_resumed_bytes = 0
        self._announce = announce
        self._measuring: dict[str, asyncio.Future[None]] = {}

    async def usage(self, project_id: str) -> Usage:
        """The project's usage as last measured: by this node, else as kept in the store (by a
        collection, another node, or before a restart); measured now only if it never was (a
        mark of a large project takes seconds). Once older than ``USAGE_TTL_S`` it is measured
        again in the background."""
        assert self.collector is not None
        u = self.usages.get(project_id)
        if u is None:
            u = await self.collector.store.usage(project_id)
            if u is None:
                u = await self.collector.usage(project_id)
            self.usages[project_id] = u
        if time.time() - u.counted_at > USAGE_TTL_S and project_id not in self._measuring:
            self._measuring[project_id] = asyncio.ensure_future(self._remeasure(project_id))
        return u

    def announce_upload(self, project_id: str, p: Pending, state: str) -> None:
        """``project:upload`` to the project's members: which file is coming, and how many of its
        blocks (in order from the first) the server holds and has checked. Sent only for uploads
        that named their ``path``; never an event of the log."""
        if self._announce is None or not p.path:
            return
        now = time.monotonic()
        if state == "progress" and p.next_index < len(p.manifest.blocks):
            wait = p.announced_at + ANNOUNCE_EVERY_S - now
            if wait > 0:  # too soon: the latest progress goes out when the interval ends
                if not p.announce_due:
                    p.announce_due = True
                    asyncio.get_running_loop().call_later(
                        wait, self._announce_due, project_id, p)
                return
        p.announced_at = now
        payload = {"project_id": project_id, "path": p.path, "hash": p.manifest.hash,
                   "size": p.manifest.size, "state": state, "ready_blocks": p.next_index,
                   "ready_bytes": p.hashed_bytes}
        if state == "started":
            payload["blocks"] = [b.to_json() for b in p.manifest.blocks]
        self._announce(project_id, "project:upload", payload, p.path)

    def _progress(self, project_id: str, p: Pending, hashed: list[int]) -> None:
        self.announce_upload(project_id, p, "progress")

    def _announce_due(self, project_id: str, p: Pending) -> None:
        p.announce_due = False
        if not p.complete:
            self.announce_upload(project_id, p, "progress")

    async def forget_project(self, project_id: str) -> None:
        """A deleted project's usage is no longer reported (``/metrics``)."""
        self.usages.pop(project_id, None)

    async def _remeasure(self, project_id: str) -> None:
        """Measure again, unless a measurement within ``USAGE_TTL_S`` is kept in the store (a
        collection, or another node, made it meanwhile)."""
        assert self.collector is not None
        try:
            u = await self.collector.store.usage(project_id)
            if u is None or time.time() - u.counted_at > USAGE_TTL_S:
                u = await self.collector.usage(project_id)
            self.usages[project_id] = u
        finally:
            self._measuring.pop(project_id, None)

    def manifest_size(self, project_id: str, file_hash: str) -> int | None:
        """The stored file's size (blocking). Manifests never change, so sizes are cached."""
        key = (project_id, file_hash)
        size = self._sizes.get(key)
        if size is None:
            manifest = self.blobs.get_manifest(project_id, file_hash)
            if manifest is None:
                return None
            if len(self._sizes) > 200_000:
                self._sizes.clear()
            size = self._sizes[key] = manifest.size
        return size

    def remember_size(self, project_id: str, file_hash: str, size: int) -> None:
        """Cache a manifest's size just stored, so the post that follows checks it inline."""
        if len(self._sizes) > 200_000:
            self._sizes.clear()
        self._sizes[(project_id, file_hash)] = size

    async def check_changes(self, project_id: str, changes: list[Change]) -> None:
        """Refuse a batch with a create/update whose content is not stored at that size. The
        content is kept fresh for the collector first, so it cannot vanish before the append."""
        def first_bad() -> tuple[int, str] | None:
            hashes = [c.hash or "" for c in changes if c.op != "delete"]
            gone = set(self.blobs.keep(project_id, hashes)) if hashes else set()
            for i, c in enumerate(changes):
                if c.op == "delete":
                    continue
                checked = (project_id, c.hash) in self._sizes
                size = None if c.hash in gone else self.manifest_size(project_id, c.hash or "")
                if size is None:
                    return i, "its content is not stored: upload the blocks and the manifest first"
                if size != c.size:
                    return i, f"'size' is {c.size} but the stored content has {size} bytes"
                if not checked:
                    # Not stored through this node's manifest or batch path (sent with PUT
                    # alone, or before a restart): an acknowledged event must not name a
                    # one-block file a power cut could lose.
                    self.blobs.sync_implied(project_id, c.hash or "")
            return None

        # Usually every size is cached (an agent posts right after uploading): then the check
        # costs no trip through a thread, which would cost more than the check itself.
        cached = all(c.op == "delete" or (project_id, c.hash) in self._sizes for c in changes)
        bad = first_bad() if cached else await asyncio.to_thread(first_bad)
        if bad is not None:
            i, why = bad
            raise ApiError(409, "content_missing", f"changes[{i}] ({changes[i].path}): {why}",
                           index=i)


CONTENT: web.AppKey[ContentService] = web.AppKey("content", ContentService)
# Larger than any seq: ``history`` before it gives a path's latest version.
LATEST_SEQ = 2**62


def _content(request: web.Request) -> ContentService:
    return request.app[CONTENT]


def _hash_param(request: web.Request, name: str = "hash") -> str:
    value = request.match_info[name]
    if not is_hash(value):
        raise bad_request("a hash is 64 lowercase hex digits", code="invalid_hash")
    return value


async def _manifest_or_404(request: web.Request, project_id: str, file_hash: str) -> Manifest:
    manifest = await asyncio.to_thread(_content(request).blobs.get_manifest, project_id, file_hash)
    if manifest is None:
        raise not_found("no content stored with this hash")
    return manifest


# -- upload (owner) ---------------------------------------------------------------------------------

async def check_blocks(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_writer(request, project_id)
    body = await read_json(request)
    hashes = body.get("hashes") if isinstance(body, dict) else None
    if not isinstance(hashes, list) or len(hashes) > MAX_CHECK_HASHES \
            or not all(is_hash(h) for h in hashes):
        raise bad_request(f"'hashes' must be an array of at most {MAX_CHECK_HASHES} hashes",
                          code="invalid_hashes")
    missing = await _content(request).blobs.missing_blocks(project_id, hashes)
    return json_response({"missing": missing})


async def put_block(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_writer(request, project_id)
    block_hash = _hash_param(request)
    svc = _content(request)
    try:
        stored, hash_ok = await svc.blobs.put_block(
            project_id, block_hash, request.content.iter_any(), request.content_length,
            on_stored=lambda parts: svc.pending.block_stored(project_id, block_hash, parts))
    except TooLarge:
        raise ApiError(413, "block_too_large",
                       f"a block is at most {MAX_BLOCK_SIZE} bytes") from None
    except QuotaExceeded as e:
        raise ApiError(413, "quota_exceeded", f"{e} (--project-quota)", usage=e.usage,
                       quota=e.quota) from None
    if not hash_ok:
        raise ApiError(422, "hash_mismatch", "the bytes sent do not hash to the block's name; "
                       "nothing was stored")
    return json_response({"hash": block_hash, "stored": stored}, status=201 if stored else 200)


async def post_manifest(request: web.Request) -> web.Response:
    """Store a manifest once its blocks are stored and hash, in order, to its ``hash``.

    Posted before its blocks, it is remembered as a pending upload (409 ``missing_blocks``): the
    blocks are hashed in order as they land, members hear ``project:upload``, and the post after
    the last block answers without reading the file again."""
    project_id = request.match_info["project_id"]
    await require_writer(request, project_id)
    svc = _content(request)
    body = await read_json(request)
    try:
        manifest = Manifest.from_json(body)
    except InconsistentManifest as e:
        raise ApiError(422, "invalid_manifest", f"invalid manifest: {e}") from None
    except ValueError as e:
        raise bad_request(f"invalid manifest: {e}", code="invalid_manifest") from None
    path = body.get("path")
    if path is not None:
        try:
            path = normalize_path(path)
        except (ValueError, TypeError) as e:
            raise bad_request(f"invalid path: {e}", code="invalid_path") from None
    if manifest.size > svc.config.max_file_size:
        raise ApiError(413, "file_too_large", f"a file is at most {svc.config.max_file_size} bytes "
                       "(--max-file-size)", limit=svc.config.max_file_size)
    # An implied manifest (one block) is "stored" as soon as its block is, so it always goes
    # the whole way: the in-order hash an upload started, and the block's fsync (put_manifest).
    if not is_implied(manifest) \
            and not await asyncio.to_thread(svc.blobs.keep, project_id, [manifest.hash]):
        return json_response({"manifest": manifest.to_json()}, status=200)
    # Touched, not just checked: a collection running now keeps them (content/blobstore.py).
    missing = await asyncio.to_thread(svc.blobs.touch_blocks, project_id,
                                      [b.hash for b in manifest.blocks])
    pending = svc.pending.get(project_id, manifest)
    if missing:
        if pending is None:
            pending = await _start_upload(request, svc, project_id, manifest, path, set(missing))
            svc.announce_upload(project_id, pending, "started")
        raise ApiError(409, "missing_blocks", f"{len(missing)} block(s) are not stored yet",
                       missing=missing[:MAX_CHECK_HASHES])
    usage = await svc.blobs.usage(project_id)
    if usage > svc.config.project_quota:
        raise ApiError(413, "quota_exceeded", f"the project stores {usage} bytes, over its "
                       f"{svc.config.project_quota}-byte quota (--project-quota)",
                       usage=usage, quota=svc.config.project_quota)
    wrong = await asyncio.to_thread(svc.blobs.wrong_sizes, project_id, manifest)
    if wrong:
        if pending is not None:
            svc.pending.forget(pending)
        raise ApiError(422, "block_size_mismatch",
                       f"blocks[{wrong[0]}]: 'size' differs from the stored block's", index=wrong[0])
    if pending is None:  # posted complete at once, or the pending upload lives on another node
        pending = await _start_upload(request, svc, project_id, manifest, path)
    while (digest := await svc.pending.digest(pending, DIGEST_RECHECK_S)) is None:
        if svc.pending.get(project_id, manifest) is not pending:  # forgotten meanwhile
            pending = await _start_upload(request, svc, project_id, manifest, path)
            continue
        gone = await svc.blobs.missing_blocks(
            project_id, [b.hash for b in manifest.blocks[pending.next_index:]])
        if gone:  # a block vanished since the check above
            raise ApiError(409, "missing_blocks", f"{len(gone)} block(s) are not stored yet",
                           missing=gone[:MAX_CHECK_HASHES])
    svc.pending.forget(pending)
    if digest != manifest.hash:
        svc.announce_upload(project_id, pending, "failed")
        damaged = await asyncio.to_thread(svc.blobs.damaged_blocks, project_id, manifest)
        if damaged:  # stored blocks a crash damaged: deleted now, so they can be sent again
            raise ApiError(409, "missing_blocks", f"{len(damaged)} block(s) are not stored yet",
                           missing=damaged)
        raise ApiError(422, "hash_mismatch", "the blocks do not hash to the manifest's 'hash'")
    created = await asyncio.to_thread(svc.blobs.put_manifest, project_id, manifest)
    svc.announce_upload(project_id, pending, "stored")
    return json_response({"manifest": manifest.to_json()}, status=201 if created else 200)


async def _start_upload(request: web.Request, svc: ContentService, project_id: str,
                        manifest: Manifest, path: str | None,
                        missing: set[str] | frozenset[str] = frozenset()) -> Pending:
    """Start hashing an upload's blocks in order as they land. An edit of a big file whose
    earlier states this node does not hold (it restarted, or another node verified the version
    before) first takes those saved with the version at ``path``: the hash then resumes before
    the first changed block, as it would have here."""
    if path is not None and len(manifest.blocks) > 1 \
            and not svc.pending.known.knows_start(project_id, manifest):
        last = await services(request).store.history(project_id, path, LATEST_SEQ, 1)
        old = last[0].change.hash if last else None
        if old and old != manifest.hash:
            checkpoints = await asyncio.to_thread(svc.blobs.load_states, project_id, old)
            if checkpoints is not None:
                svc.pending.known.add(project_id, old, checkpoints)
    fresh = svc.pending.get(project_id, manifest) is None
    pending = svc.pending.start(project_id, manifest, path, missing)
    if fresh:  # it starts where its saved state was taken
        svc.hash_resumed_bytes += pending.hashed_bytes
    return pending


# -- download (members) -----------------------------------------------------------------------------

def _byte_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The requested ``[start, end)``, None for the whole; 416 if it lies past the end.

    A Range header we cannot parse (or several ranges) is ignored, as RFC 9110 allows."""
    if "Range" not in request.headers:
        return None
    try:
        rng = request.http_range
    except ValueError:
        return None
    start, stop = rng.start, rng.stop
    if start is not None and start < 0:  # the last -start bytes
        start, stop = max(0, size + start), size
        if size == 0:
            start = 0
    else:
        start = start or 0
        stop = size if stop is None else min(stop, size)
    if start >= size or start >= stop:
        response = json_response({"error": {
            "code": "range_not_satisfiable", "message": f"the content is {size} bytes long"}},
            status=416)
        response.headers["Content-Range"] = f"bytes */{size}"
        raise _Respond(response)
    return start, stop


class _Respond(Exception):
    """Carry a finished error response out of a helper."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _chunks(blobs: BlobStore, project_id: str, manifest: Manifest, start: int,
                  end: int) -> AsyncIterator[bytes]:
    """Bytes ``[start, end)`` of a stored file, read on a worker thread."""
    reader = blobs.read_range(project_id, manifest, start, end, STREAM_CHUNK)
    sentinel = b""
    while True:
        data = await asyncio.to_thread(next, reader, sentinel)
        if not data:
            return
        yield data


async def serve_manifest(request: web.Request, project_id: str, manifest: Manifest,
                         headers: dict[str, str],
                         opened: BinaryIO | None = None) -> web.StreamResponse:
    """Stream a stored file with Range support (200 whole, 206 a range, 416 past the end).
    ``opened``: the file of a one-block manifest, already open (the caller closes it)."""
    try:
        rng = _byte_range(request, manifest.size)
    except _Respond as r:
        return r.response
    start, end = rng if rng is not None else (0, manifest.size)
    response = web.StreamResponse(status=206 if rng is not None else 200,
                                  headers={**CONTENT_HEADERS, **headers})
    response.headers["ETag"] = f'"{manifest.hash}"'
    if rng is not None:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{manifest.size}"
    response.content_length = end - start
    await response.prepare(request)
    if request.method != "HEAD":
        await _send(request, _content(request).blobs, project_id, manifest, start, end, opened)
    await response.write_eof()
    return response


async def _send(request: web.Request, blobs: BlobStore, project_id: str, manifest: Manifest,
                start: int, end: int, opened: BinaryIO | None = None) -> None:
    """Write bytes ``[start, end)`` of a stored file after the prepared headers, block by block
    with ``sendfile`` (the kernel copies from the page cache to the socket; asyncio falls back
    to reads and writes where it cannot, e.g. TLS)."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    loop = asyncio.get_running_loop()
    for path, offset, count in blobs.pieces(project_id, manifest, start, end):
        f = opened if opened is not None else await asyncio.to_thread(open, path, "rb")
        try:
            sent = await loop.sendfile(transport, f, offset, count)
        finally:
            if f is not opened:
                f.close()
        if sent != count:
            raise OSError(f"block {os.path.basename(path)} is shorter than its manifest says")


async def get_block(request: web.Request) -> web.StreamResponse:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id)
    block_hash = _hash_param(request)
    path = _content(request).blobs.block_path(project_id, block_hash)

    def open_block() -> tuple[BinaryIO, int]:  # one trip to a thread: 1,024 per GiB fetched
        f = open(path, "rb")  # noqa: SIM115 - closed below, once served
        return f, os.fstat(f.fileno()).st_size

    try:
        f, size = await asyncio.to_thread(open_block)
    except FileNotFoundError:
        raise not_found("no block stored with this hash") from None
    try:
        one = Manifest(block_hash, size, (BlockRef(block_hash, size, 0),) if size else ())
        return await serve_manifest(request, project_id, one,
                                    {"Cache-Control": "private, max-age=31536000, immutable"}, f)
    finally:
        f.close()


async def get_manifest(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id)
    manifest = await _manifest_or_404(request, project_id, _hash_param(request))
    return json_response(manifest.to_json())


async def get_content(request: web.Request) -> web.StreamResponse:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id)
    manifest = await _manifest_or_404(request, project_id, _hash_param(request))
    return await serve_manifest(request, project_id, manifest,
                                {"Cache-Control": "private, max-age=31536000, immutable"})


# -- download links (browsers) ----------------------------------------------------------------------

async def create_download_link(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    user, _ = await require_role(request, project_id)
    body = await read_json(request)
    if not isinstance(body, dict) or ("path" in body) == ("prefix" in body):
        raise bad_request("send {path} for a file or {prefix} for a folder", code="invalid_body")
    ttl = json_int(body.get("expires_in_s", DEFAULT_TTL_S))
    if ttl is None or not 1 <= ttl <= MAX_TTL_S:
        raise bad_request(f"'expires_in_s' must be an integer from 1 to {MAX_TTL_S}",
                          code="invalid_expires_in_s")
    inline = body.get("inline", False)
    if not isinstance(inline, bool) or (inline and "path" not in body):
        raise bad_request("'inline' is true or false, and only for a {path}",
                          code="invalid_inline")
    store = services(request).store
    if "path" in body:
        try:
            path = normalize_path(body["path"])
        except ValueError as e:
            raise bad_request(f"invalid path: {e}", code="invalid_path") from None
        entry = await _live_file(store, project_id, path)
        if entry is None:
            raise not_found("no such file in the project")
        kind, target = "file", path
    else:
        prefix = body["prefix"]
        if not isinstance(prefix, str):
            raise bad_request("'prefix' must be a string", code="invalid_path")
        prefixes = normalize_prefixes([prefix]) if prefix.strip("/") else ()
        files, _ = await store.files(project_id, prefixes)
        if not files:
            raise not_found("no files under this prefix")
        kind, target = "folder", prefixes[0] if prefixes else ""
    expires_at = time.time() + ttl
    answer: dict = {"expires_at": iso(datetime.fromtimestamp(expires_at, UTC))}
    if inline:
        media = media_type(target)
        if media is None:
            raise ApiError(422, "not_playable", "only audio and video the browser plays (MP4, "
                           "WebM, Ogg, MP3, AAC, WAV, FLAC) open in the page; download this file "
                           "instead")
        grant = LinkGrant(project_id, user.id, kind, target, expires_at, True, entry.hash)
        url = DOWNLOAD_PATH + _content(request).signer.sign(grant)
        poster = _content(request).posters.available and media.demuxer is not None
        answer |= {"media_type": media.mime, "poster_url": url + POSTER_SUFFIX if poster else None}
    else:
        url = DOWNLOAD_PATH + _content(request).signer.sign(
            LinkGrant(project_id, user.id, kind, target, expires_at))
    return json_response({"url": url, **answer})


async def _live_file(store: Store, project_id: str, path: str) -> FileEntry | None:
    """The live file at ``path``. The store lists by folder, so list the file's folder."""
    parent = path.rsplit("/", 1)[0] if "/" in path else None
    files, _ = await store.files(project_id, normalize_prefixes([parent]) if parent else ())
    return next((f for f in files if f.path == path), None)


def _attachment(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _grant(request: web.Request) -> LinkGrant:
    """The link's grant, if it is ours, unexpired, and its user still a member."""
    try:
        grant = _content(request).signer.verify(request.match_info["token"])
    except InvalidLink:
        raise ApiError(403, "invalid_link", "this download link is not valid") from None
    except ExpiredLink:
        raise ApiError(410, "link_expired", "this download link has expired; ask for a new one") \
            from None
    if await services(request).store.role_of(grant.project_id, grant.user_id) is None:
        raise ApiError(403, "link_revoked", "the link's user is no longer a member of the project")
    return grant


async def download(request: web.Request) -> web.StreamResponse:
    grant = await _grant(request)
    store = services(request).store
    private = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    if grant.inline:
        return await _serve_inline(request, grant, private)
    if grant.kind == "file":
        entry = await _live_file(store, grant.project_id, grant.target)
        if entry is None:
            raise not_found("the file was deleted since the link was made")
        manifest = await _manifest_or_404(request, grant.project_id, entry.hash)
        return await serve_manifest(request, grant.project_id, manifest, {
            **private, "Content-Disposition": _attachment(entry.path.rsplit("/", 1)[-1])})
    return await _serve_zip(request, grant, private)


async def _serve_inline(request: web.Request, grant: LinkGrant,
                        headers: dict[str, str]) -> web.StreamResponse:
    """A file to play in the page: the version the link was made for, with its allow-listed
    media type (the link is only made for those), inline, and for this origin only."""
    media = media_type(grant.target)
    if media is None or grant.file_hash is None:  # not a link we make
        raise ApiError(403, "invalid_link", "this download link is not valid")
    manifest = await _manifest_or_404(request, grant.project_id, grant.file_hash)
    name = grant.target.rsplit("/", 1)[-1]
    return await serve_manifest(request, grant.project_id, manifest, {
        **headers, "Content-Type": media.mime,
        "Content-Disposition": _attachment(name).replace("attachment", "inline", 1),
        "Cross-Origin-Resource-Policy": "same-origin"})


async def poster(request: web.Request) -> web.Response:
    """A play link's poster frame (JPEG), made by ffmpeg where it is installed."""
    grant = await _grant(request)
    media = media_type(grant.target)
    if not grant.inline or media is None or grant.file_hash is None:
        raise not_found("only a link to play a video has a poster frame")
    manifest = await _manifest_or_404(request, grant.project_id, grant.file_hash)
    data = await _content(request).posters.poster(grant.project_id, manifest, media)
    if data is None:
        raise ApiError(404, "no_poster", "no poster frame for this file (audio, ffmpeg not "
                       "installed on the server, or ffmpeg could not read it)")
    return web.Response(body=data, headers={
        "Content-Type": "image/jpeg", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox", "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "private, max-age=3600", "Referrer-Policy": "no-referrer"})


async def _serve_zip(request: web.Request, grant: LinkGrant,
                     headers: dict[str, str]) -> web.StreamResponse:
    svc = _content(request)
    store = services(request).store
    prefixes = (grant.target,) if grant.target else ()
    files, _ = await store.files(grant.project_id, prefixes)
    manifests = await asyncio.to_thread(
        lambda: [svc.blobs.get_manifest(grant.project_id, f.hash) for f in files])
    if any(m is None for m in manifests):
        raise ApiError(409, "content_missing", "some files' content is not stored")
    if grant.target:
        name = grant.target.rstrip("/").rsplit("/", 1)[-1]
    else:
        project = await store.get_project(grant.project_id)
        name = project.name if project else "project"
    entries = [ZipEntry(f.path, m.size, f.mtime,
                        functools.partial(_chunks, svc.blobs, grant.project_id, m, 0, m.size))
               for f, m in zip(files, manifests, strict=True) if m is not None]
    response = web.StreamResponse(headers={
        **headers, "Content-Type": "application/zip", "X-Content-Type-Options": "nosniff",
        "Content-Disposition": _attachment(name + ".zip")})
    await response.prepare(request)
    if request.method != "HEAD":
        async def write(data: bytes) -> None:
            if data:
                await response.write(data)
        await write_zip(entries, write)
    await response.write_eof()
    return response


def setup(app: web.Application) -> None:
    """Open the content store, refuse changes that name missing content, add the routes."""
    svc = app[SERVICES]
    content = ContentService(svc.config.content, svc.config.data_dir, svc.announce)
    app[CONTENT] = content

    async def stop_pending(app: web.Application) -> None:
        await content.pending.close()

    app.on_cleanup.append(stop_pending)
    svc.change_checks.append(content.check_changes)
    svc.on_project_deleted.append(content.blobs.delete_project)
    svc.on_project_deleted.append(content.forget_project)
    content.collector = Collector(svc.store, content.blobs, svc.config.content.retention_s)
    r = app.router
    base = "/api/projects/{project_id}"
    r.add_post(base + "/blocks/check", check_blocks)
    block = base + "/blocks/{hash:(?!check$)[^{}/]+}"  # not the route beside it, blocks/check
    r.add_put(block, put_block)
    r.add_get(block, get_block)
    r.add_post(base + "/manifests", post_manifest)
    r.add_get(base + "/manifests/{hash}", get_manifest)
    r.add_get(base + "/content/{hash}", get_content)
    r.add_post(base + "/download-links", create_download_link)
    r.add_get(DOWNLOAD_PATH + "{token}", download)
    r.add_get(DOWNLOAD_PATH + "{token}" + POSTER_SUFFIX, poster)



class RedactingAccessLogger(AccessLogger):
    """A download link is a bearer credential for a few minutes: keep it out of access logs."""

    def log(self, request, response, time):  # noqa: ANN001, ANN201 - as AccessLogger.log
        if request.path.startswith(DOWNLOAD_PATH):
            request = request.clone(rel_url=DOWNLOAD_PATH + "REDACTED")
        super().log(request, response, time)
