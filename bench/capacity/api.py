"""The few HTTP calls the benchmarks make: a user, projects, stored content, posted changes.

The server accepts a change only for content it stores, so ``Api.project`` stores one small
file (one block and its manifest) that every posted change names.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import aiohttp

CONTENT = b"vidsync capacity benchmark\n"
CONTENT_HASH = hashlib.sha256(CONTENT).hexdigest()


def timed_path(tag: str | int) -> str:
    """A path that tells a subscriber when the change was sent (see swarm_worker.py)."""
    return f"cap/{tag}/{time.time():.6f}"


def change(path: str) -> dict:
    return {"path": path, "op": "create", "hash": CONTENT_HASH, "size": len(CONTENT),
            "mtime": 1_700_000_000_000}


class HttpError(RuntimeError):
    pass


class Api:
    """One user's HTTP session with a server (vidsync, or the Node reference with no auth)."""

    def __init__(self, url: str, connections: int = 16) -> None:
        self.url = url
        self.token = ""
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=120))

    async def close(self) -> None:
        await self.http.close()

    async def call(self, method: str, path: str, json: object = None, data: bytes | None = None,
                   ok: tuple[int, ...] = (200, 201)) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if data is not None:
            headers["Content-Type"] = "application/octet-stream"
        async with self.http.request(method, self.url + path, json=json, data=data,
                                     headers=headers) as r:
            body = await r.read()
            if r.status not in ok:
                raise HttpError(f"{method} {path}: {r.status} {body[:300]!r}")
            return await r.json() if body else {}

    async def register(self) -> str:
        body = await self.call("POST", "/api/auth/register", {
            "email": f"bench-{uuid.uuid4().hex[:12]}@example.com", "password": uuid.uuid4().hex,
            "name": "capacity bench"})
        self.token = body["token"]
        return self.token

    async def project(self, name: str = "capacity bench") -> str:
        """A new project holding the content every benchmark change names."""
        pid = (await self.call("POST", "/api/projects", {"name": name}))["project"]["id"]
        await self.call("PUT", f"/api/projects/{pid}/blocks/{CONTENT_HASH}", data=CONTENT)
        await self.call("POST", f"/api/projects/{pid}/manifests", {
            "hash": CONTENT_HASH, "size": len(CONTENT),
            "blocks": [{"hash": CONTENT_HASH, "size": len(CONTENT)}]})
        return pid

    async def post(self, project: str, changes: list[dict]) -> dict:
        return await self.call("POST", f"/api/projects/{project}/files/update",
                               {"changes": changes})

    async def last_seq(self, project: str) -> int:
        projects = (await self.call("GET", "/api/projects"))["projects"]
        return next(p["last_seq"] for p in projects if p["id"] == project)
