"""A file the owner is uploading shows its progress, rate and time left in a collaborator's page.

The owner's side is driven step by step as the agent does it (manifest first with its path, then
the blocks, then the manifest again, then the change), slowly enough to be watched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request

import pytest
from web_support import Api

from vidsync.content.blocks import block_size_for

expect = pytest.importorskip("playwright.sync_api").expect

PATH = "footage/A002_C010.mov"


def post_manifest(api: Api, token: str, project_id: str, manifest: dict) -> int:
    req = urllib.request.Request(
        f"{api.base_url}/api/projects/{project_id}/manifests", method="POST",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status
    except urllib.error.HTTPError as e:
        return e.code


def test_owner_upload_shows_progress(start_server, new_page, screenshot):
    server = start_server()
    api = Api(server.url)
    owner, _ = api.register("Olivia")
    project_id = api.project(owner, "Launch film")
    viewer, _ = api.viewer(owner, project_id)
    page = new_page(server.url, viewer)
    page.goto(f"/projects/{project_id}")
    expect(page.locator(".conn")).to_have_attribute("data-state", "live")

    data = os.urandom(12 * 1024 * 1024)
    size = block_size_for(len(data))
    blocks = [data[i:i + size] for i in range(0, len(data), size)]
    manifest = {"hash": hashlib.sha256(data).hexdigest(), "size": len(data), "path": PATH,
                "blocks": [{"hash": hashlib.sha256(b).hexdigest(), "size": len(b)} for b in blocks]}
    assert post_manifest(api, owner, project_id, manifest) == 409  # remembered: blocks to come

    def send_blocks() -> None:  # about 4 s: 96 blocks of 128 KiB
        for block, ref in zip(blocks, manifest["blocks"], strict=True):
            api.call("PUT", f"/api/projects/{project_id}/blocks/{ref['hash']}", owner, block)
            time.sleep(0.04)

    sender = threading.Thread(target=send_blocks)
    sender.start()
    try:
        upload = page.locator(f'.upload[data-path="{PATH}"]')
        expect(upload.locator(".upload-meta")).to_have_text(re.compile(
            r"^Uploading \d+% · [\d.]+ (KB|MB) of 12 MB · [\d.]+ (KB|MB)/s · \d+ s left$"))
        screenshot(page, "project-upload", full_page=False)
        first = float(upload.locator("progress").get_attribute("value"))
        page.wait_for_function(
            "([sel, v]) => Number(document.querySelector(sel).value) > v",
            arg=[f'.upload[data-path="{PATH}"] progress', first + size])
    finally:
        sender.join()
    assert post_manifest(api, owner, project_id, manifest) == 201
    expect(upload.locator(".upload-meta")).to_have_text("Uploaded")
    api.post_changes(owner, project_id, [{"path": PATH, "op": "create", "hash": manifest["hash"],
                                          "size": len(data), "mtime": 1_764_000_000_000}])
    expect(page.locator(f'.tree-row.file[data-path="{PATH}"]')).to_be_visible()
    expect(upload).to_have_count(0)  # gone a moment after it was stored
