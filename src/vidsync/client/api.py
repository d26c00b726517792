"""``Client``: every HTTP call of docs/protocol.md as a coroutine, over one aiohttp session.

Answers come back as the JSON the server sent (plain dicts, as documented in the protocol), except
manifests, which are ``Manifest`` objects because the transfer helpers work on them. Any error
answer raises ``ApiError`` with the server's ``code``; a server that cannot be reached raises
``ServerUnreachable``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from vidsync.client.errors import ApiError, ContentMismatch, ServerUnreachable
from vidsync.client.follow import Follower
from vidsync.client.transfer import (
    DownloadResult,
    HaveBlock,
    PlaceBlock,
    UploadResult,
    download_file,
    upload_file,
)
from vidsync.content.blocks import Manifest


@dataclass
class SmallFiles:
    """What ``get_small_files`` answers: the verified bytes by hash, and what it could not get."""

    files: dict[str, bytes] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # not stored on the server
    too_large: list[str] = field(default_factory=list)  # stored, but fetch them whole
    damaged: list[str] = field(default_factory=list)  # the bytes did not hash to their name


def _encode(files: Sequence[tuple[str, bytes]]) -> list[dict]:
    return [{"hash": h, "data": base64.b64encode(d).decode()} for h, d in files]


def _verify(answer: dict) -> SmallFiles:
    out = SmallFiles(missing=answer["missing"], too_large=answer["too_large"])
    for f in answer["files"]:
        data = base64.b64decode(f["data"])
        if hashlib.sha256(data).hexdigest() == f["hash"]:
            out.files[f["hash"]] = data
        else:
            out.damaged.append(f["hash"])
    return out


DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
STREAM_CHUNK = 1024 * 1024


def _paths_param(paths: Sequence[str] | None) -> dict[str, str]:
    return {"paths": ",".join(paths)} if paths else {}


def _range_header(start: int, end: int | None) -> dict[str, str]:
    """``end`` is exclusive, as in Python slices; HTTP's last byte is inclusive."""
    if start == 0 and end is None:
        return {}
    return {"Range": f"bytes={start}-{'' if end is None else end - 1}"}


async def _raise_for(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    try:
        body = await response.json(content_type=None)
        err = body.pop("error")
        code, message = str(err.pop("code")), str(err.pop("message"))
        err = {**body, **err}  # fields beside "error" too (409 conflict's "conflicts")
    except Exception:  # not our JSON error shape (a proxy's page, a cut connection)
        code, message, err = "http_error", (response.reason or "error"), {}
    raise ApiError(response.status, code, message, err)


class Client:
    """An authenticated connection to one Vidsync server.

    Use as ``async with Client(url, token) as c: ...`` (or call ``close``). ``register`` and
    ``login`` set ``token`` for the calls that follow.
    """

    def __init__(self, base_url: str, token: str | None = None, *,
                 session: aiohttp.ClientSession | None = None,
                 timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
                 upload_concurrency: int = 8, download_concurrency: int = 8) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.upload_concurrency = upload_concurrency
        self.download_concurrency = download_concurrency
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Large reads: a 1 MiB block arrives in a few socket reads, not sixteen.
            self._session = aiohttp.ClientSession(timeout=self.timeout, read_bufsize=1 << 20)
        return self._session

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- plumbing -----------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, json: Any = None, data: Any = None,
                      params: dict | None = None, headers: dict | None = None,
                      timeout: aiohttp.ClientTimeout | None = None) -> Any:
        """One call: the decoded JSON answer (None for 204), or ``ApiError``/``ServerUnreachable``."""
        all_headers = {**self.auth_headers(), **(headers or {})}
        try:
            async with self.session.request(method, self.url(path), json=json, data=data,
                                            params=params, headers=all_headers,
                                            timeout=timeout or self.timeout) as r:
                await _raise_for(r)
                if r.status == 204:
                    return None
                return await r.json(content_type=None)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise ServerUnreachable(f"{method} {path}: {e!r}") from e

    async def _stream(self, path: str, start: int, end: int | None,
                      chunk_size: int) -> AsyncIterator[bytes]:
        try:
            async with self.session.get(self.url(path), headers={
                    **self.auth_headers(), **_range_header(start, end)}) as r:
                await _raise_for(r)
                if (start or end is not None) and r.status != 206:
                    raise ApiError(r.status, "range_ignored", "the server did not honour the Range")
                async for chunk in r.content.iter_chunked(chunk_size):
                    yield chunk
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise ServerUnreachable(f"GET {path}: {e!r}") from e

    # -- accounts -----------------------------------------------------------------------------------

    async def register(self, email: str, password: str, name: str | None = None) -> dict:
        """Create an account and use its token: ``{token, user}``."""
        body = {"email": email, "password": password, **({"name": name} if name else {})}
        out = await self.request("POST", "/api/auth/register", json=body)
        self.token = out["token"]
        return out

    async def login(self, email: str, password: str) -> dict:
        """Log in and use the new token: ``{token, user}``."""
        out = await self.request("POST", "/api/auth/login", json={"email": email, "password": password})
        self.token = out["token"]
        return out

    async def logout(self) -> None:
        """Revoke the token (its sockets are disconnected too)."""
        await self.request("POST", "/api/auth/logout")
        self.token = None

    async def me(self) -> dict:
        """The caller: ``{id, email, name}``."""
        return (await self.request("GET", "/api/auth/me"))["user"]

    # -- projects, invites, members -----------------------------------------------------------------

    async def create_project(self, name: str, description: str | None = None) -> dict:
        body = {"name": name, **({"description": description} if description is not None else {})}
        return (await self.request("POST", "/api/projects", json=body))["project"]

    async def projects(self) -> list[dict]:
        """Owned and joined projects, each with ``role``, ``member_count``, ``last_seq``."""
        return (await self.request("GET", "/api/projects"))["projects"]

    async def project(self, project_id: str) -> dict:
        """``{project, role, members}``."""
        return await self.request("GET", f"/api/projects/{quote(project_id)}")

    async def update_project(self, project_id: str, name: str | None = None,
                             description: str | None = None) -> dict:
        body = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        return (await self.request("PATCH", f"/api/projects/{quote(project_id)}", json=body))["project"]

    async def delete_project(self, project_id: str) -> None:
        await self.request("DELETE", f"/api/projects/{quote(project_id)}")

    async def create_invite(self, project_id: str, expires_in_s: int | None = None,
                            max_uses: int | None = None, role: str | None = None) -> dict:
        """A new invite: ``{code, expires_at, max_uses, uses, role}`` (``role``: ``viewer``, the
        default, or ``editor``)."""
        body = {k: v for k, v in (("expires_in_s", expires_in_s), ("max_uses", max_uses),
                                  ("role", role)) if v is not None}
        return (await self.request("POST", f"/api/projects/{quote(project_id)}/invites",
                                   json=body))["invite"]

    async def invites(self, project_id: str) -> list[dict]:
        return (await self.request("GET", f"/api/projects/{quote(project_id)}/invites"))["invites"]

    async def revoke_invite(self, project_id: str, code: str) -> None:
        await self.request("DELETE", f"/api/projects/{quote(project_id)}/invites/{quote(code)}")

    async def join(self, invite_code: str) -> dict:
        """Join with an invite code or link: ``{project, role}``."""
        return await self.request("POST", "/api/projects/join", json={"invite_code": invite_code})

    async def set_member_role(self, project_id: str, user_id: str, role: str) -> dict:
        """Make a member an ``editor`` or a ``viewer`` (owner only): the member record."""
        return (await self.request(
            "PATCH", f"/api/projects/{quote(project_id)}/members/{quote(user_id)}",
            json={"role": role}))["member"]

    async def remove_member(self, project_id: str, user_id: str) -> None:
        await self.request("DELETE", f"/api/projects/{quote(project_id)}/members/{quote(user_id)}")

    # -- locks --------------------------------------------------------------------------------------

    async def lock(self, project_id: str, path: str) -> dict:
        """Lock a file for the caller: ``{path, user, acquired_at, expires_at}`` (a lease renewed
        while the caller is connected). ``ApiError`` 409 ``locked`` (``details["lock"]``) when
        someone else holds it."""
        return (await self.request("POST", f"/api/projects/{quote(project_id)}/locks",
                                   json={"path": path}))["lock"]

    async def unlock(self, project_id: str, path: str) -> None:
        """Release the caller's lock (the owner may break anyone's)."""
        await self.request("DELETE", f"/api/projects/{quote(project_id)}/locks",
                           params={"path": path})

    async def locks(self, project_id: str) -> list[dict]:
        return (await self.request("GET", f"/api/projects/{quote(project_id)}/locks"))["locks"]

    # -- the event log ------------------------------------------------------------------------------

    async def post_changes(self, project_id: str, changes: list[dict],
                           idempotency_key: str | None = None) -> dict:
        """Append a batch (1 to 1000 changes): ``{results: [{path, op, seq}], last_seq}``.

        Retrying with the same ``idempotency_key`` after a lost answer returns the first answer
        and appends nothing. A create/update whose content is not stored yet raises ``ApiError``
        409 ``content_missing`` (``details["index"]`` names the change). A change with ``base``
        (the hash it was made from, or None for "did not exist") whose path has moved on raises
        ``ApiError`` 409 ``conflict`` with ``details["conflicts"]`` (``[{index, path, current:
        {hash, seq, author}}]``); a viewer gets 403 ``forbidden``."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.request("POST", f"/api/projects/{quote(project_id)}/files/update",
                                  json={"changes": changes}, headers=headers)

    async def events(self, project_id: str, since_seq: int = 0, limit: int | None = None,
                     wait: int | None = None, paths: Sequence[str] | None = None) -> dict:
        """Events after ``since_seq``: ``{events, last_seq, has_more}``. With ``wait`` (seconds, at
        most 60) the server holds the call until there is something new."""
        params: dict[str, Any] = {"since_seq": since_seq, **_paths_param(paths)}
        if limit is not None:
            params["limit"] = limit
        timeout = None
        if wait:
            params["wait"] = wait
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=wait + 30)
        return await self.request("GET", f"/api/projects/{quote(project_id)}/events",
                                  params=params, timeout=timeout)

    async def files(self, project_id: str, paths: Sequence[str] | None = None) -> dict:
        """Live files and the seq the listing reflects: ``{files, seq}``."""
        return await self.request("GET", f"/api/projects/{quote(project_id)}/files",
                                  params=_paths_param(paths))

    # -- version history ----------------------------------------------------------------------------

    async def history(self, project_id: str, path: str, before_seq: int | None = None,
                      limit: int | None = None) -> dict:
        """A path's versions, newest first (``dir/`` a folder's, ``/`` all):
        ``{versions: [{seq, path, op, hash, size, mtime, author, created_at, available}],
        has_more}``; the next page is ``before_seq`` = the last seq."""
        params: dict[str, Any] = {"path": path}
        if before_seq is not None:
            params["before_seq"] = before_seq
        if limit is not None:
            params["limit"] = limit
        return await self.request("GET", f"/api/projects/{quote(project_id)}/files/history",
                                  params=params)

    async def deleted(self, project_id: str, prefix: str | None = None, after: str | None = None,
                      limit: int | None = None) -> dict:
        """Deleted paths with their last version: ``{files: [{path, deleted_seq, deleted_at,
        last_version}], has_more}``; the next page is ``after`` = the last path."""
        params: dict[str, Any] = {}
        for name, value in (("prefix", prefix), ("after", after), ("limit", limit)):
            if value is not None:
                params[name] = value
        return await self.request("GET", f"/api/projects/{quote(project_id)}/files/deleted",
                                  params=params)

    async def restore(self, project_id: str, path: str, seq: int,
                      idempotency_key: str | None = None) -> dict:
        """Bring back a file's version (``seq`` one of its versions) or a folder (``dir/``) as
        of ``seq``: ``{results, last_seq}`` as ``post_changes``. 410 ``expired`` when the content
        is no longer kept."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.request("POST", f"/api/projects/{quote(project_id)}/files/restore",
                                  json={"path": path, "seq": seq}, headers=headers)

    # -- content ------------------------------------------------------------------------------------

    async def check_blocks(self, project_id: str, hashes: Sequence[str]) -> list[str]:
        """Which of ``hashes`` the server lacks (any number; asked 10000 at a time)."""
        missing: list[str] = []
        for i in range(0, len(hashes), 10_000):
            out = await self.request("POST", f"/api/projects/{quote(project_id)}/blocks/check",
                                     json={"hashes": list(hashes[i:i + 10_000])})
            missing += out["missing"]
        return missing

    async def put_small_files(self, project_id: str,
                              files: Sequence[tuple[str, bytes]]) -> int:
        """Store small files' content in one request: ``(hash, bytes)`` each, within the limits
        of ``vidsync.content.batches`` (cut them with ``pack``). Returns how many were new (never
        the empty file, which the server needs nothing to store); ``ApiError`` 422
        ``hash_mismatch`` (nothing stored) if some bytes do not match."""
        body = await asyncio.to_thread(_encode, files)
        out = await self.request("POST", f"/api/projects/{quote(project_id)}/content-batch",
                                 json={"files": body})
        return out["stored"]

    async def get_small_files(self, project_id: str, hashes: Sequence[str]) -> SmallFiles:
        """Many small files' bytes in one request, each checked against its hash here."""
        out = await self.request("POST", f"/api/projects/{quote(project_id)}/content-batch/get",
                                 json={"hashes": list(hashes)})
        return await asyncio.to_thread(_verify, out)

    async def put_block(self, project_id: str, block_hash: str,
                        data: bytes | bytearray | memoryview) -> bool:
        """Store one block; True if it was new, False if the server had it already."""
        path = f"/api/projects/{quote(project_id)}/blocks/{block_hash}"
        try:
            async with self.session.put(self.url(path), data=data, headers={
                    **self.auth_headers(), "Content-Type": "application/octet-stream"}) as r:
                await _raise_for(r)
                await r.read()
                return r.status == 201
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise ServerUnreachable(f"PUT {path}: {e!r}") from e

    async def get_block(self, project_id: str, block_hash: str, start: int = 0,
                        end: int | None = None) -> bytes:
        """A block's bytes, or ``[start, end)`` of them."""
        path = f"/api/projects/{quote(project_id)}/blocks/{block_hash}"
        try:
            async with self.session.get(self.url(path), headers={
                    **self.auth_headers(), **_range_header(start, end)}) as r:
                await _raise_for(r)
                if (start or end is not None) and r.status != 206:
                    raise ApiError(r.status, "range_ignored", "the server did not honour the Range")
                return await r.read()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as e:
            raise ServerUnreachable(f"GET {path}: {e!r}") from e

    async def post_manifest(self, project_id: str, manifest: Manifest,
                            path: str | None = None) -> Manifest:
        """Record a file whose blocks are all stored. ``ApiError`` 409 ``missing_blocks``
        (``details["missing"]``), 422 ``hash_mismatch``, 413 ``file_too_large``/``quota_exceeded``.

        Posted before the blocks, it starts the upload: the 409 lists what to send, and with the
        file's ``path`` in the project, members are told the blocks as they land."""
        body = manifest.to_json()
        if path is not None:
            body["path"] = path
        # The server may still be hashing the stored blocks in order: minutes for tens of GB
        # posted at once, nearly nothing when the manifest was posted before the blocks.
        out = await self.request("POST", f"/api/projects/{quote(project_id)}/manifests",
                                 json=body, timeout=aiohttp.ClientTimeout(
                                     total=None, sock_connect=10, sock_read=None))
        return Manifest.from_json(out["manifest"])

    async def manifest(self, project_id: str, file_hash: str) -> Manifest:
        """A file's manifest; ``ContentMismatch`` if the server answers for another file."""
        manifest = Manifest.from_json(await self.request(
            "GET", f"/api/projects/{quote(project_id)}/manifests/{file_hash}"))
        if manifest.hash != file_hash or sum(b.size for b in manifest.blocks) != manifest.size:
            raise ContentMismatch(f"the server's manifest for {file_hash} does not describe it")
        return manifest

    def content(self, project_id: str, file_hash: str, start: int = 0, end: int | None = None,
                chunk_size: int = STREAM_CHUNK) -> AsyncIterator[bytes]:
        """Stream a whole file, or ``[start, end)`` of it: ``async for chunk in c.content(...)``."""
        return self._stream(f"/api/projects/{quote(project_id)}/content/{file_hash}", start, end,
                            chunk_size)

    async def download_link(self, project_id: str, path: str | None = None,
                            prefix: str | None = None) -> dict:
        """A short-lived signed URL for a browser: ``{url, expires_at}``; ``url`` is absolute.
        Give ``path`` for one file or ``prefix`` for a folder (served as a zip)."""
        if (path is None) == (prefix is None):
            raise ValueError("give exactly one of path or prefix")
        body = {"path": path} if path is not None else {"prefix": prefix}
        out = await self.request("POST", f"/api/projects/{quote(project_id)}/download-links",
                                 json=body)
        if out["url"].startswith("/"):
            out["url"] = self.base_url + out["url"]
        return out

    # -- transfers and following (see transfer.py and follow.py) ------------------------------------

    async def upload_file(self, project_id: str, local_path: str | os.PathLike, *,
                          manifest: Manifest | None = None, path: str | None = None,
                          on_progress: Callable[[int], None] | None = None) -> UploadResult:
        """Store a local file's content; returns ``UploadResult(hash, size, uploaded_bytes)``.

        Posts the manifest, sends the blocks the server says it lacks (in file order, at most
        ``upload_concurrency`` requests and 32 MiB in flight), then posts the manifest again:
        after a cut-off upload, calling it again sends only the rest. Give the ``manifest`` from
        ``split_file`` if you have it (or from ``hash_file``, whose saved states make hashing the
        file's next version cost only what follows its first change); otherwise the file is
        hashed first. ``path`` (the file's
        path in the project) lets the server announce the upload to members. ``ContentMismatch``
        if the file changes meanwhile. ``on_progress(n)`` gets bytes sent."""
        return await upload_file(self, project_id, local_path, manifest=manifest, path=path,
                                 on_progress=on_progress)

    async def download_file(self, project_id: str, manifest: Manifest | str,
                            dest: str | os.PathLike, *,
                            have_block: HaveBlock | None = None,
                            place_block: PlaceBlock | None = None, resume: bool = True,
                            done: set[int] | None = None,
                            wait_for_block: Callable[[int], Awaitable[None]] | None = None,
                            on_progress: Callable[[int], None] | None = None) -> DownloadResult:
        """Write a file's content to ``dest`` (a temporary path: rename it into place yourself);
        returns ``DownloadResult(hash, size, downloaded_bytes, reused_bytes)``.

        ``manifest`` may be the file hash (its manifest is fetched). For each block, in order of
        preference: an index in ``done`` (already written and checked by this caller; every block
        written is added to it), the bytes already at that offset in ``dest`` (``resume``; hashed
        to check), ``place_block(ref, fd)`` (the caller copies it from a source it vouches for,
        e.g. by reflink; on a worker thread), ``have_block(ref)`` (bytes the caller has locally;
        called on the event loop, may return an awaitable; hashed to check), else a download
        (``download_concurrency`` requests and 32 MiB at a time). Every downloaded block is
        checked against its hash (``ContentMismatch`` otherwise); the server checked that the
        blocks make up the file's hash when it stored the manifest. ``wait_for_block(i)`` is
        awaited before block ``i`` is requested (a file still being uploaded: see
        ``project:upload``). ``dest`` is fsynced; the result's ``content_hash`` is the SHA-256
        of what was written, read back in order while the download ran."""
        return await download_file(self, project_id, manifest, dest, have_block=have_block,
                                   place_block=place_block, resume=resume, done=done,
                                   wait_for_block=wait_for_block, on_progress=on_progress)

    def follow(self, project_id: str, since_seq: int, paths: Sequence[str] | None = None,
               **options: Any) -> Follower:
        """Follow a project's events from ``since_seq``: ``async for event in c.follow(...)``.

        Each event after ``since_seq`` (matching ``paths`` if given) is yielded exactly once, in
        seq order, across reconnects, server restarts and transport fallbacks. The returned
        ``Follower`` exposes ``state`` (``ConnectionState``) and ``seq`` (how far the log has been
        seen: persist it after handling an event to resume there). Raises ``ProjectRemoved`` when
        the caller is removed or the project deleted, ``ApiError`` 401 when the token is revoked.
        ``options`` are ``Follower``'s keyword arguments."""
        return Follower(self, project_id, since_seq, paths, **options)

