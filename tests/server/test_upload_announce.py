"""``project:upload``: members hear which blocks of a file being uploaded the server holds, as
they land, outside the log (nothing is appended, nothing names content the server lacks)."""

from __future__ import annotations

import hashlib
import os

from harness import Api

from server.helpers import all_events, assert_error, wait_until


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_upload_progress_reaches_members_watching_its_path(api: Api, owner, project,
                                                           listen) -> None:
    token, _ = owner
    clips_viewer, _ = api.viewer(token, project)
    audio_viewer, _ = api.viewer(token, project)
    clips = listen(clips_viewer)
    audio = listen(audio_viewer)
    assert clips.subscribe({"projectId": project, "paths": ["clips/"]})["ok"] is True
    assert audio.subscribe({"projectId": project, "paths": ["audio/"]})["ok"] is True

    data = os.urandom(5 * 128 * 1024 + 7)
    blocks = [data[i:i + 128 * 1024] for i in range(0, len(data), 128 * 1024)]
    manifest = {"hash": sha(data), "size": len(data),
                "blocks": [{"hash": sha(b), "size": len(b)} for b in blocks]}
    url = f"/api/projects/{project}/manifests"
    assert_error(api.post(url, token=token, json={**manifest, "path": "../x"}), 400,
                 "invalid_path")
    err = assert_error(api.post(url, token=token, json={**manifest, "path": "clips/a.mov"}),
                       409, "missing_blocks")
    assert err["missing"] == [b["hash"] for b in manifest["blocks"]]
    wait_until(lambda: clips.named("project:upload"), what="the upload's start")
    started = clips.named("project:upload")[0]
    assert started == {"project_id": project, "path": "clips/a.mov", "hash": manifest["hash"],
                       "size": len(data), "state": "started", "ready_blocks": 0,
                       "ready_bytes": 0, "blocks": manifest["blocks"]}
    for i, block in enumerate(blocks):
        r = api.request("PUT", f"/api/projects/{project}/blocks/{sha(block)}", token=token,
                        content=block, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        # Announced once stored and hashed in order: a member may fetch blocks 0..i now.
        wait_until(lambda i=i: clips.named("project:upload")[-1]["ready_blocks"] > i,
                   what=f"block {i} announced")
        assert clips.named("project:upload")[-1]["ready_bytes"] == sum(map(len, blocks[:i + 1]))
    r = api.post(url, token=token, json={**manifest, "path": "clips/a.mov"})
    assert r.status_code == 201, r.text
    wait_until(lambda: clips.named("project:upload")[-1]["state"] == "stored", what="stored")
    ready = [m["ready_blocks"] for m in clips.named("project:upload")]
    assert ready == sorted(ready) and ready[-1] == len(blocks)
    assert all("blocks" not in m for m in clips.named("project:upload")[1:])
    # Only the members watching that path heard it, and the log holds nothing yet.
    assert audio.named("project:upload") == []
    assert all_events(api, token, project) == []
    assert clips.seqs() == []
