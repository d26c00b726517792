"""Small files in batches: many files' content stored, or read, in one request.

An image sequence is thousands of files of a few KB. One request per block, per manifest and per
download would make the round trip, not the disk, the limit; these two routes carry up to
``MAX_BATCH_FILES`` files (``MAX_BATCH_BYTES`` of content, limits in
``vidsync.content.batches``) each way, base64 in JSON:

- ``POST /api/projects/:id/content-batch`` stores each file as its one block (what ``split_file``
  makes of a file up to ``MAX_BATCH_FILE_SIZE``), whose manifest is implied: no manifest file is
  written (content/blobstore.py). Every file's bytes are hashed here before anything is stored;
  one that does not match its ``hash`` refuses the whole batch (422 ``hash_mismatch`` with its
  ``index``), so nothing unverified is ever kept.
- ``POST /api/projects/:id/content-batch/get`` answers stored files' bytes; the client checks each
  against its hash as it would a single download.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib

import orjson
from aiohttp import web

from vidsync.content.batches import (
    MAX_BATCH_BODY,
    MAX_BATCH_BYTES,
    MAX_BATCH_FILE_SIZE,
    MAX_BATCH_FILES,
)
from vidsync.content.blobstore import QuotaExceeded
from vidsync.content.blocks import is_hash
from vidsync.errors import ApiError, bad_request
from vidsync.server.content import CONTENT, ContentService
from vidsync.server.http import json_response, require_role, require_writer


def _svc(request: web.Request) -> ContentService:
    return request.app[CONTENT]


async def _read_body(request: web.Request) -> object:
    """The JSON body, up to ``MAX_BATCH_BODY`` bytes (more than the API's usual JSON limit)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    if request.content_length is not None and request.content_length > MAX_BATCH_BODY:
        raise ApiError(413, "batch_too_large", f"a batch body is at most {MAX_BATCH_BODY} bytes",
                       limit=MAX_BATCH_BODY)
    parts, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BATCH_BODY:
            raise ApiError(413, "batch_too_large",
                           f"a batch body is at most {MAX_BATCH_BODY} bytes", limit=MAX_BATCH_BODY)
        parts.append(chunk)
    try:
        return orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError as e:
        raise bad_request(f"malformed JSON: {e}", code="invalid_json") from None


def _decode(body: object) -> list[tuple[str, bytes]]:
    """``{files: [{hash, data}]}`` as (hash, bytes), shape and limits checked (not hashes)."""
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_BATCH_FILES:
        raise bad_request(f"'files' must be an array of 1 to {MAX_BATCH_FILES} files",
                          code="invalid_files")
    out, total = [], 0
    for i, f in enumerate(files):
        if not isinstance(f, dict) or not is_hash(f.get("hash")) \
                or not isinstance(f.get("data"), str):
            raise bad_request(f"files[{i}]: send {{hash: 64 hex digits, data: base64}}",
                              code="invalid_files", index=i)
        try:
            data = base64.b64decode(f["data"], validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"files[{i}]: 'data' is not base64", code="invalid_files",
                              index=i) from None
        if len(data) > MAX_BATCH_FILE_SIZE:
            raise ApiError(413, "file_too_large", f"files[{i}]: a file in a batch is at most "
                           f"{MAX_BATCH_FILE_SIZE} bytes (send larger ones as blocks and a "
                           "manifest)", index=i, limit=MAX_BATCH_FILE_SIZE)
        total += len(data)
        if total > MAX_BATCH_BYTES:
            raise ApiError(413, "batch_too_large", f"a batch carries at most {MAX_BATCH_BYTES} "
                           "bytes of content", limit=MAX_BATCH_BYTES)
        out.append((f["hash"], data))
    return out


def _first_mismatch(files: list[tuple[str, bytes]]) -> int | None:
    for i, (h, data) in enumerate(files):
        if hashlib.sha256(data).hexdigest() != h:
            return i
    return None


async def put_batch(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_writer(request, project_id)
    files = _decode(await _read_body(request))
    bad = await asyncio.to_thread(_first_mismatch, files)
    if bad is not None:
        raise ApiError(422, "hash_mismatch", f"files[{bad}]: the bytes sent do not hash to its "
                       "'hash'; nothing in the batch was stored", index=bad)
    svc = _svc(request)
    try:
        new = await svc.blobs.store_small_files(project_id, files)
    except QuotaExceeded as e:
        raise ApiError(413, "quota_exceeded", f"{e} (--project-quota)", usage=e.usage,
                       quota=e.quota) from None
    for (h, data), _ in zip(files, new, strict=True):
        svc.remember_size(project_id, h, len(data))
    return json_response({"stored": sum(new), "files": [
        {"hash": h, "stored": n} for (h, _), n in zip(files, new, strict=True)]})


async def get_batch(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await require_role(request, project_id)
    body = await _read_body(request)
    hashes = body.get("hashes") if isinstance(body, dict) else None
    if not isinstance(hashes, list) or not 1 <= len(hashes) <= MAX_BATCH_FILES \
            or not all(is_hash(h) for h in hashes):
        raise bad_request(f"'hashes' must be an array of 1 to {MAX_BATCH_FILES} hashes",
                          code="invalid_hashes")
    blobs = _svc(request).blobs

    def read() -> tuple[list[dict], list[str], list[str]]:
        files, missing, too_large, total = [], [], [], 0
        for h in dict.fromkeys(hashes):
            manifest = blobs.get_manifest(project_id, h)
            if manifest is None:
                missing.append(h)
                continue
            if manifest.size > MAX_BATCH_FILE_SIZE:
                too_large.append(h)
                continue
            total += manifest.size
            if total > MAX_BATCH_BYTES:
                raise ApiError(413, "batch_too_large", f"these files hold more than "
                               f"{MAX_BATCH_BYTES} bytes: ask for fewer", limit=MAX_BATCH_BYTES)
            try:
                data = b"".join(blobs.read_range(project_id, manifest, 0, manifest.size))
            except OSError:  # a block removed meanwhile
                missing.append(h)
                continue
            files.append({"hash": h, "data": base64.b64encode(data).decode()})
        return files, missing, too_large

    files, missing, too_large = await asyncio.to_thread(read)
    return json_response({"files": files, "missing": missing, "too_large": too_large})


def setup(app: web.Application) -> None:
    base = "/api/projects/{project_id}/content-batch"
    app.router.add_post(base, put_batch)
    app.router.add_post(base + "/get", get_batch)
