"""Helpers for the browser tests: a small HTTP API client, the projects they set up, signing in.
(Their servers are ``vidsync.testing.ServerProcess``, started in conftest.py.)"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from vidsync.content.blocks import block_size_for

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"

# The files of the projects the tests set up: a video edit, with folders.
SNAPSHOT = {
    "edit/launch-v3.prproj": b"p" * 48_213,
    "footage/a-cam/A001_C004.mov": b"m" * 2_400_000,
    "footage/b-cam/B001_C002.mov": b"m" * 3_100_000,
    "audio/interview-mix.wav": b"w" * 940_000,
}

# POST-to-badge latencies (ms) measured by the tests, reported at the end of the run.
LATENCIES: dict[str, list[float]] = {}


def sign_in(page, base_url: str, token: str) -> None:  # noqa: ANN001 - a Playwright page
    """Sign ``page`` in as a login through the UI would (for tests that set up users over the
    API): the session cookie, and the page's note that it has one. Replaces any session."""
    page.context.add_cookies([{"name": "vidsync_session", "value": token, "url": base_url,
                               "httpOnly": True, "sameSite": "Strict"}])
    if not page.url.startswith(base_url):
        page.goto(base_url + "/login")
    page.evaluate("localStorage.setItem('vidsync.signedIn', '1')")


class Api:
    """Just enough of the HTTP API to set up what a test does not click through."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.stored: set[tuple[str, str]] = set()  # (project, file hash) already uploaded

    def call(self, method: str, path: str, token: str | None = None,
             body: dict | bytes | None = None) -> dict | None:
        raw = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        content_type = "application/octet-stream" if isinstance(body, bytes) else "application/json"
        req = urllib.request.Request(
            self.base_url + path, method=method, data=raw,
            headers={"Content-Type": content_type,
                     **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                answer = res.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read().decode()}") from None
        return json.loads(answer) if answer else None

    def register(self, name: str) -> tuple[str, dict]:
        email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        res = self.call("POST", "/api/auth/register",
                        body={"email": email, "password": PASSWORD, "name": name})
        return res["token"], res["user"]

    def project(self, token: str, name: str, description: str = "") -> str:
        body = {"name": name, **({"description": description} if description else {})}
        return self.call("POST", "/api/projects", token, body)["project"]["id"]

    def invite(self, token: str, project_id: str) -> str:
        return self.call("POST", f"/api/projects/{project_id}/invites", token, {})["invite"]["code"]

    def viewer(self, owner_token: str, project_id: str, name: str = "Vera") -> tuple[str, dict]:
        token, user = self.register(name)
        self.call("POST", "/api/projects/join", token,
                  {"invite_code": self.invite(owner_token, project_id)})
        return token, user

    def upload(self, token: str, project_id: str, data: bytes) -> str:
        """Store a file's content as the owner's agent does (blocks, then the manifest)."""
        digest = hashlib.sha256(data).hexdigest()
        if (project_id, digest) in self.stored:
            return digest
        size = block_size_for(len(data))
        blocks = [data[i:i + size] for i in range(0, len(data), size)]
        hashes = [hashlib.sha256(b).hexdigest() for b in blocks]
        base = f"/api/projects/{project_id}"
        missing = set(self.call("POST", f"{base}/blocks/check", token, {"hashes": hashes})["missing"])
        for block_hash, block in zip(hashes, blocks, strict=True):
            if block_hash in missing:
                self.call("PUT", f"{base}/blocks/{block_hash}", token, block)
                missing.discard(block_hash)  # a file may repeat a block: send it once
        self.call("POST", f"{base}/manifests", token, {
            "hash": digest, "size": len(data),
            "blocks": [{"hash": h, "size": len(b)} for h, b in zip(hashes, blocks, strict=True)]})
        self.stored.add((project_id, digest))
        return digest

    def change(self, token: str, project_id: str, path: str, data: bytes | None,
               mtime: int = 1_764_000_000_000) -> dict:
        """A change for ``path`` (``None`` deletes it), its content uploaded first."""
        if data is None:
            return {"path": path, "op": "delete", "hash": None}
        return {"path": path, "op": "create", "hash": self.upload(token, project_id, data),
                "size": len(data), "mtime": mtime}

    def post_changes(self, token: str, project_id: str, changes: list[dict]) -> int:
        """One files/update batch; returns its last seq."""
        res = self.call("POST", f"/api/projects/{project_id}/files/update", token,
                        {"changes": changes})
        return res["last_seq"]

    def post_files(self, token: str, project_id: str, files: dict[str, bytes | None]) -> int:
        """Upload and post ``files`` as one batch, a minute of mtime apart."""
        return self.post_changes(token, project_id, [
            self.change(token, project_id, path, data, 1_764_000_000_000 + i * 60_000)
            for i, (path, data) in enumerate(files.items())])
