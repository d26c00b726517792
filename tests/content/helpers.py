"""Helpers for the content tests: raw block and manifest calls through the test ``Api``."""

from __future__ import annotations

import hashlib

import httpx
from harness import Api


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_block(api: Api, token: str | None, project: str, data: bytes,
              name: str | None = None) -> httpx.Response:
    return api.request("PUT", f"/api/projects/{project}/blocks/{name or sha(data)}", token=token,
                       content=data, headers={"Content-Type": "application/octet-stream"})


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def manifest_of(data: bytes, size: int) -> dict:
    return {"hash": sha(data), "size": len(data),
            "blocks": [{"hash": sha(b), "size": len(b)} for b in split(data, size)]}


def store_file(api: Api, token: str, project: str, data: bytes, size: int) -> httpx.Response:
    """Upload ``data`` in blocks of ``size`` bytes and post its manifest."""
    for block in split(data, size):
        assert put_block(api, token, project, block).status_code in (200, 201)
    return api.post(f"/api/projects/{project}/manifests", token=token, json=manifest_of(data, size))


def missing(api: Api, token: str, project: str, hashes: list[str]) -> list[str]:
    r = api.post(f"/api/projects/{project}/blocks/check", token=token, json={"hashes": hashes})
    assert r.status_code == 200, r.text
    return r.json()["missing"]
