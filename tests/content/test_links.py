"""Download links: a signed, expiring URL that serves a file or a folder (as a zip) to a browser."""

from __future__ import annotations

import asyncio
import io
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from harness import CONTENTS, Api, ServerProcess, change
from server.helpers import assert_error

from vidsync.content import zipstream


@pytest.fixture
def shared(api: Api) -> tuple[str, str, dict[str, bytes]]:
    """(owner token, project, {path: content}) with files in two folders and at the top."""
    owner, _ = api.register("owner")
    project = api.project(owner, "Rushes")
    changes = [change("clips/a.mov", n=1, size=300_000), change("clips/day 2/b.mov", n=2, size=10),
               change("audio/c.wav", n=3, size=2000), change("notes.txt", n=4, size=0)]
    assert api.post_changes(owner, project, changes).status_code == 200
    return owner, project, {c["path"]: CONTENTS[c["hash"]] for c in changes}


def link(api: Api, token: str, project: str, **body) -> dict:
    r = api.post(f"/api/projects/{project}/download-links", token=token, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["url"].startswith("/api/download/")
    return r.json()


def test_file_link_works_without_a_header(api: Api, server: ServerProcess, shared) -> None:
    owner, project, files = shared
    viewer, _ = api.viewer(owner, project)
    url = link(api, viewer, project, path="clips/day 2/b.mov")["url"]
    r = api.get(url)
    assert r.status_code == 200 and r.content == files["clips/day 2/b.mov"]
    assert r.headers["content-disposition"].startswith('attachment; filename="b.mov"')
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["cache-control"] == "no-store"
    url = link(api, owner, project, path="clips/a.mov")["url"]
    r = api.get(url, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == files["clips/a.mov"][1000:2000]
    r = api.get(link(api, owner, project, path="notes.txt")["url"])
    assert r.status_code == 200 and r.content == b""
    token = url.rsplit("/", 1)[1]
    assert token not in server.log  # a link is a credential: kept out of the access log
    assert (server.data_dir / "link-secret").stat().st_mode & 0o777 == 0o600


def test_link_requests_are_checked(api: Api, shared) -> None:
    owner, project, _ = shared
    url = f"/api/projects/{project}/download-links"
    assert_error(api.post(url, token=owner, json={"path": "nope.mov"}), 404)
    assert_error(api.post(url, token=owner, json={"prefix": "nothing/"}), 404)
    assert_error(api.post(url, token=owner, json={"path": "../etc/passwd"}), 400, "invalid_path")
    assert_error(api.post(url, token=owner, json={"path": "a", "prefix": "b"}), 400)
    assert_error(api.post(url, token=owner, json={"path": "notes.txt", "expires_in_s": 0}), 400)
    assert_error(api.post(url, token=api.register("stranger")[0], json={"path": "notes.txt"}), 404)
    assert_error(api.post(url, json={"path": "notes.txt"}), 401)


def test_expired_link(api: Api, shared) -> None:
    owner, project, _ = shared
    url = link(api, owner, project, path="notes.txt", expires_in_s=1)["url"]
    assert api.get(url).status_code == 200
    time.sleep(2.1)
    assert_error(api.get(url), 410, "link_expired")


def test_tampered_links_are_refused(api: Api, shared) -> None:
    owner, project, _ = shared
    url = link(api, owner, project, path="notes.txt")["url"]
    payload, mac = url.rsplit("/", 1)[1].split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    assert_error(api.get(f"/api/download/{payload}.{flipped}"), 403, "invalid_link")
    other = link(api, owner, project, path="audio/c.wav")["url"].rsplit("/", 1)[1].split(".")[0]
    assert_error(api.get(f"/api/download/{other}.{mac}"), 403, "invalid_link")  # wrong path
    assert_error(api.get("/api/download/garbage"), 403, "invalid_link")


def test_removed_member_link_stops(api: Api, shared) -> None:
    owner, project, _ = shared
    viewer, user = api.viewer(owner, project)
    url = link(api, viewer, project, path="audio/c.wav")["url"]
    assert api.get(url).status_code == 200
    assert api.delete(f"/api/projects/{project}/members/{user['id']}", token=owner).status_code == 204
    assert_error(api.get(url), 403, "link_revoked")


def test_deleted_file_link_stops(api: Api, shared) -> None:
    owner, project, _ = shared
    url = link(api, owner, project, path="audio/c.wav")["url"]
    assert api.post_changes(owner, project, [change("audio/c.wav", op="delete")]).status_code == 200
    assert_error(api.get(url), 404)


def test_folder_as_zip(api: Api, shared, tmp_path: Path) -> None:
    owner, project, files = shared
    r = api.get(link(api, owner, project, prefix="clips")["url"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert 'filename="clips.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.testzip() is None
        assert {n: zf.read(n) for n in zf.namelist()} == {
            p: d for p, d in files.items() if p.startswith("clips/")}
    (tmp_path / "clips.zip").write_bytes(r.content)  # other tools read the streamed form too
    out = subprocess.run(["unzip", "-t", str(tmp_path / "clips.zip")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    r = api.get(link(api, owner, project, prefix="")["url"])
    assert 'filename="Rushes.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == files


@pytest.mark.asyncio
async def test_zip64_when_entries_are_big(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Entries past 4 GiB need ZIP64 records; the limit is lowered so a test can write them."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    data = bytes(range(256)) * 20  # 5120 bytes: "big"

    async def chunks():
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    out = bytearray()

    async def write(b: bytes) -> None:
        out.extend(b)

    entries = [zipstream.ZipEntry(f"f{i}.bin", len(data), 1_700_000_000_000, chunks)
               for i in range(3)]
    await zipstream.write_zip(entries, write)
    assert b"PK\x06\x06" in out  # the ZIP64 end of central directory record
    monkeypatch.undo()
    with zipfile.ZipFile(io.BytesIO(bytes(out))) as zf:
        assert zf.testzip() is None
        assert [zf.read(n) for n in zf.namelist()] == [data] * 3
    (tmp_path / "z.zip").write_bytes(out)
    unzip = await asyncio.create_subprocess_exec("unzip", "-tq", str(tmp_path / "z.zip"),
                                                 stdout=asyncio.subprocess.DEVNULL)
    assert await unzip.wait() == 0
