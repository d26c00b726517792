"""What the tests share: real ``vidsync serve`` processes on free ports (``ServerProcess`` and
``free_port``, from ``vidsync.testing``, which the benchmarks use too), PostgreSQL scratch
databases, a small HTTP helper, and test changes with real content. (Fixtures are in
conftest.py; this module has a name of its own so ``from harness import ...`` means the same
module whichever folders a run collects.)

Set ``VIDSYNC_TEST_DATABASE`` to a PostgreSQL URL (a server where the test user may create
databases) to run every server on a fresh scratch database there instead of SQLite.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from vidsync.content.blocks import block_size_for
from vidsync.testing import (  # noqa: F401 - the tests import them from here
    VIDSYNC,
    AgentProcess,
    ServerProcess,
    free_port,
)

ROOT = Path(__file__).resolve().parent.parent


def scratch_database(base: str | None = None) -> str | None:
    """A new empty database on the configured PostgreSQL server (or the one ``base`` names), or
    None for SQLite."""
    base = base or os.environ.get("VIDSYNC_TEST_DATABASE", "")
    if not base.startswith("postgres"):
        return None
    import psycopg  # only needed for the PostgreSQL run

    name = "vidsync_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    SCRATCH_DATABASES.append((base, name))
    return base.rsplit("/", 1)[0] + "/" + name


# Scratch databases this run created, as (server URL, name), dropped when it ends.
SCRATCH_DATABASES: list[tuple[str, str]] = []


class Api:
    """A thin client for tests: ``api.post(path, json=..., token=...)`` returns the response."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self._stored: set[tuple[str, str]] = set()  # (project, hash) this helper uploaded

    def request(self, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, path, headers=headers, **kw)

    def get(self, path: str, **kw) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def register(self, name: str | None = None) -> tuple[str, dict]:
        """A new user: (token, user)."""
        email = f"{name or 'user'}-{uuid.uuid4().hex[:10]}@example.com"
        r = self.post("/api/auth/register", json={"email": email, "password": "correct horse 1",
                                                   "name": name or "user"})
        assert r.status_code == 201, r.text
        return r.json()["token"], r.json()["user"]

    def project(self, token: str, name: str = "film") -> str:
        r = self.post("/api/projects", json={"name": name}, token=token)
        assert r.status_code == 201, r.text
        return r.json()["project"]["id"]

    def post_changes(self, token: str, project_id: str, changes: list[dict],
                     key: str | None = None) -> httpx.Response:
        """Post a batch the way an owner agent does: the content first, then the changes."""
        for c in changes:
            if c.get("op") in ("create", "update") and c.get("hash") in CONTENTS:
                self._store_content(token, project_id, CONTENTS[c["hash"]])
        headers = {"Idempotency-Key": key} if key else {}
        return self.post(f"/api/projects/{project_id}/files/update", json={"changes": changes},
                         token=token, headers=headers)

    def upload(self, token: str, project_id: str, data: bytes) -> str:
        """Store ``data`` as a file's content (blocks, then manifest); returns its hash."""
        digest = self._store_content(token, project_id, data)
        assert digest is not None, "upload refused"
        return digest

    def _store_content(self, token: str, project_id: str, data: bytes) -> str | None:
        """Upload ``data`` unless this helper already did; None if the server refused (e.g. the
        caller is not the owner: ``files/update`` then answers for itself)."""
        digest = hashlib.sha256(data).hexdigest()
        if (project_id, digest) in self._stored:
            return digest
        size = block_size_for(len(data))
        blocks = [data[i:i + size] for i in range(0, len(data), size)]
        base = f"/api/projects/{project_id}"
        for block in blocks:
            r = self.request("PUT", f"{base}/blocks/{hashlib.sha256(block).hexdigest()}",
                             token=token, content=block,
                             headers={"Content-Type": "application/octet-stream"})
            if r.status_code not in (200, 201):
                return None
        r = self.post(f"{base}/manifests", token=token, json={
            "hash": digest, "size": len(data),
            "blocks": [{"hash": hashlib.sha256(b).hexdigest(), "size": len(b)} for b in blocks]})
        if r.status_code not in (200, 201):
            return None
        self._stored.add((project_id, digest))
        return digest

    def viewer(self, owner_token: str, project_id: str, role: str = "viewer") -> tuple[str, dict]:
        """A new user who joined the project with an invite (for ``role``)."""
        token, user = self.register(role)
        code = self.post(f"/api/projects/{project_id}/invites", json={"role": role},
                         token=owner_token).json()["invite"]["code"]
        r = self.post("/api/projects/join", json={"invite_code": code}, token=token)
        assert r.status_code == 200, r.text
        return token, user

    def editor(self, owner_token: str, project_id: str) -> tuple[str, dict]:
        """A new user who joined the project with an editor invite."""
        return self.viewer(owner_token, project_id, "editor")


# Content of every change built by ``change``, by hash, so ``Api.post_changes`` can store it.
CONTENTS: dict[str, bytes] = {}


def content(n: int, size: int) -> bytes:
    """Deterministic test content: ``n`` picks which, ``size`` how many bytes."""
    unit = f"vidsync test content {n}\n".encode()
    return (unit * (size // len(unit) + 1))[:size]


def change(path: str, op: str = "create", n: int = 0, size: int = 1) -> dict:
    """A valid change whose hash is the SHA-256 of ``content(n, size)``."""
    if op == "delete":
        return {"path": path, "op": op, "hash": None, "size": None, "mtime": None}
    data = content(n, size)
    digest = hashlib.sha256(data).hexdigest()
    CONTENTS[digest] = data
    return {"path": path, "op": op, "hash": digest, "size": size,
            "mtime": 1_700_000_000_000 + n}


def wait_until(pred: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something true (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def all_events(api: Api, token: str, project_id: str, since_seq: int = 0, **params: Any) -> list[dict]:
    """Every event after ``since_seq``, following ``has_more`` page by page."""
    out: list[dict] = []
    while True:
        r = api.get(f"/api/projects/{project_id}/events", token=token,
                    params={"since_seq": since_seq, "limit": 1000, **params})
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["events"]
        if not body["has_more"]:
            return out
        since_seq = body["events"][-1]["seq"]
