"""Links to play a file in the page: allow-listed media types, ranges, and poster frames.

The clips in tests/media are real (3 s, 160x90, made with ffmpeg's test source: VP9 in WebM,
H.264 in MP4), so ffmpeg has something to take a poster frame from.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from harness import Api, ServerProcess, scratch_database
from server.helpers import assert_error

from content.helpers import sha, store_file

MEDIA = Path(__file__).resolve().parents[1] / "media"
WEBM = (MEDIA / "clip.webm").read_bytes()
MP4 = (MEDIA / "clip.mp4").read_bytes()
BLOCK = 128 * 1024


def post_file(api: Api, token: str, project: str, path: str, data: bytes) -> None:
    assert store_file(api, token, project, data, BLOCK).status_code in (200, 201)
    r = api.post(f"/api/projects/{project}/files/update", token=token, json={"changes": [
        {"path": path, "op": "create", "hash": sha(data), "size": len(data), "mtime": 1}]})
    assert r.status_code == 200, r.text


def play_link(api: Api, token: str, project: str, path: str) -> dict:
    r = api.post(f"/api/projects/{project}/download-links", token=token,
                 json={"path": path, "inline": True, "expires_in_s": 3600})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def project(api: Api) -> tuple[str, str, str]:
    """(owner, viewer, project) with the clips, a large 'video' and an HTML file."""
    owner, _ = api.register("owner")
    project = api.project(owner, "Cut")
    viewer, _ = api.viewer(owner, project)
    post_file(api, owner, project, "clips/a.webm", WEBM)
    post_file(api, owner, project, "clips/b.mp4", MP4)
    post_file(api, owner, project, "big/long.mp4", bytes(range(256)) * 4096)  # 1 MiB, 8 blocks
    post_file(api, owner, project, "notes/page.html", b"<script>alert(1)</script>")
    return owner, viewer, project


def test_play_link_serves_media_inline_with_ranges(api: Api, project) -> None:
    _, viewer, pid = project
    link = play_link(api, viewer, pid, "clips/a.webm")
    assert link["media_type"] == "video/webm"
    r = api.get(link["url"])
    assert r.status_code == 200 and r.content == WEBM
    assert r.headers["content-type"] == "video/webm"
    assert r.headers["content-disposition"].startswith('inline; filename="a.webm"')
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"] == "sandbox"
    assert r.headers["cross-origin-resource-policy"] == "same-origin"
    assert r.headers["accept-ranges"] == "bytes"

    data = bytes(range(256)) * 4096
    url = play_link(api, viewer, pid, "big/long.mp4")["url"]
    # Ranges across block boundaries (blocks are 128 KiB), open-ended and from the end.
    for header, want, first, last in [
            ("bytes=131000-262200", data[131000:262201], 131000, 262200),
            ("bytes=600000-", data[600000:], 600000, len(data) - 1),
            ("bytes=-1000", data[-1000:], len(data) - 1000, len(data) - 1)]:
        r = api.get(url, headers={"Range": header})
        assert r.status_code == 206 and r.content == want, header
        assert r.headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
        assert r.headers["content-type"] == "video/mp4"
    r = api.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert_error(r, 416, "range_not_satisfiable")
    assert r.headers["content-range"] == f"bytes */{len(data)}"


def test_only_allow_listed_media_play(api: Api, project) -> None:
    owner, viewer, pid = project
    url = f"/api/projects/{pid}/download-links"
    assert_error(api.post(url, token=viewer, json={"path": "notes/page.html", "inline": True}),
                 422, "not_playable")
    assert_error(api.post(url, token=viewer, json={"prefix": "clips/", "inline": True}),
                 400, "invalid_inline")
    assert_error(api.post(url, token=viewer, json={"path": "clips/a.webm", "inline": "yes"}),
                 400, "invalid_inline")
    # The HTML file still downloads as an opaque attachment, never as a page.
    r = api.post(url, token=viewer, json={"path": "notes/page.html"})
    page = api.get(r.json()["url"])
    assert page.headers["content-type"] == "application/octet-stream"
    assert page.headers["content-disposition"].startswith("attachment")
    # A plain download link has no poster.
    assert_error(api.get(r.json()["url"] + "/poster"), 404)


def test_play_link_keeps_the_version_it_was_made_for(api: Api, project) -> None:
    owner, viewer, pid = project
    url = play_link(api, viewer, pid, "clips/a.webm")["url"]
    post_file(api, owner, pid, "clips/a.webm", MP4)  # replaced mid-playback
    assert api.get(url, headers={"Range": "bytes=0-99"}).content == WEBM[:100]
    assert play_link(api, viewer, pid, "clips/a.webm")["media_type"] == "video/webm"


def test_play_link_ends_with_membership(api: Api, project) -> None:
    owner, _, pid = project
    viewer, user = api.viewer(owner, pid)
    url = play_link(api, viewer, pid, "clips/b.mp4")["url"]
    assert api.get(url).status_code == 200
    assert api.delete(f"/api/projects/{pid}/members/{user['id']}", token=owner).status_code == 204
    assert_error(api.get(url, headers={"Range": "bytes=0-9"}), 403, "link_revoked")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_poster_frame_with_ffmpeg(api: Api, server: ServerProcess, project) -> None:
    _, viewer, pid = project
    for path, data in [("clips/a.webm", WEBM), ("clips/b.mp4", MP4)]:
        link = play_link(api, viewer, pid, path)
        assert link["poster_url"] == link["url"] + "/poster"
        r = api.get(link["poster_url"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
        assert r.headers["x-content-type-options"] == "nosniff"
        cached = server.data_dir / "blobs" / pid / "posters" / f"{sha(data)}.jpg"
        assert cached.read_bytes() == r.content  # made once, then served from the cache
    # Not a video ffmpeg can read: no poster, and the failure is cached too.
    link = play_link(api, viewer, pid, "big/long.mp4")
    assert_error(api.get(link["poster_url"]), 404, "no_poster")
    assert_error(api.get(link["poster_url"]), 404, "no_poster")
    data = bytes(range(256)) * 4096
    assert (server.data_dir / "blobs" / pid / "posters" / f"{sha(data)}.jpg").read_bytes() == b""


def test_no_ffmpeg_no_poster(tmp_path: Path) -> None:
    """On a server whose PATH has no ffmpeg, playing works and there is simply no poster."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}
    assert shutil.which("ffmpeg", path=env["PATH"]) is None
    server = ServerProcess(tmp_path / "server", database=scratch_database(), env=env).start()
    api = Api(server.url)
    try:
        owner, _ = api.register("owner")
        pid = api.project(owner, "No ffmpeg")
        post_file(api, owner, pid, "clips/a.webm", WEBM)
        link = play_link(api, owner, pid, "clips/a.webm")
        assert link["poster_url"] is None
        assert api.get(link["url"], headers={"Range": "bytes=0-9"}).content == WEBM[:10]
        assert_error(api.get(link["url"] + "/poster"), 404, "no_poster")
    finally:
        api.http.close()
        server.stop()
