"""The content store over HTTP: blocks, manifests, whole files and ranges, and the change check."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import orjson
import pytest
from harness import Api, ServerProcess, change
from server.helpers import assert_error

from content.helpers import manifest_of, missing, put_block, sha, split, store_file
from vidsync.content.blobstore import BlobStore
from vidsync.content.blocks import EMPTY_HASH, MAX_BLOCK_SIZE, Manifest

KiB = 1024


@pytest.fixture
def owner(api: Api) -> str:
    return api.register("owner")[0]


@pytest.fixture
def project(api: Api, owner: str) -> str:
    return api.project(owner)


def block_files(server: ServerProcess, project: str) -> list[Path]:
    return [p for p in (server.data_dir / "blobs" / project / "blocks").rglob("*") if p.is_file()]


def test_block_upload_dedup_and_check(api: Api, server: ServerProcess, owner: str,
                                      project: str) -> None:
    a, b = os.urandom(1000), os.urandom(2000)
    assert missing(api, owner, project, [sha(a), sha(b), sha(a)]) == [sha(a), sha(b)]
    r = put_block(api, owner, project, a)
    assert r.status_code == 201 and r.json() == {"hash": sha(a), "stored": True}
    assert put_block(api, owner, project, a).status_code == 200  # already there: kept once
    assert missing(api, owner, project, [sha(a), sha(b)]) == [sha(b)]
    stored = block_files(server, project)
    assert [p.name for p in stored] == [sha(a)] and stored[0].read_bytes() == a
    assert not any((server.data_dir / "blobs" / project / "tmp").iterdir())


def test_hash_mismatch_stores_nothing(api: Api, server: ServerProcess, owner: str,
                                      project: str) -> None:
    data = os.urandom(5000)
    assert_error(put_block(api, owner, project, data, name=sha(b"other")), 422, "hash_mismatch")
    assert missing(api, owner, project, [sha(b"other"), sha(data)]) == [sha(b"other"), sha(data)]
    assert block_files(server, project) == []
    assert_error(put_block(api, owner, project, data, name="ABC"), 400, "invalid_hash")


def test_only_the_owner_uploads(api: Api, owner: str, project: str) -> None:
    viewer, _ = api.viewer(owner, project)
    stranger, _ = api.register("stranger")
    data = b"block"
    assert_error(put_block(api, viewer, project, data), 403, "forbidden")
    assert_error(put_block(api, stranger, project, data), 404)
    assert_error(put_block(api, None, project, data), 401)
    for token, status in ((viewer, 403), (stranger, 404), (None, 401)):
        assert_error(api.post(f"/api/projects/{project}/blocks/check", token=token,
                              json={"hashes": [sha(data)]}), status)
        assert_error(api.post(f"/api/projects/{project}/manifests", token=token,
                              json=manifest_of(data, 128 * KiB)), status)
    assert missing(api, owner, project, [sha(data)]) == [sha(data)]


def test_members_download_blocks_with_ranges(api: Api, owner: str, project: str) -> None:
    data = os.urandom(10_000)
    put_block(api, owner, project, data)
    viewer, _ = api.viewer(owner, project)
    url = f"/api/projects/{project}/blocks/{sha(data)}"
    r = api.get(url, token=viewer)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-content-type-options"] == "nosniff"
    r = api.get(url, token=viewer, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == "bytes 100-199/10000"
    r = api.get(url, token=viewer, headers={"Range": "bytes=-300"})
    assert r.status_code == 206 and r.content == data[-300:]
    r = api.get(url, token=viewer, headers={"Range": "bytes=9990-"})
    assert r.status_code == 206 and r.content == data[9990:]
    r = api.get(url, token=viewer, headers={"Range": "bytes=10000-"})
    assert_error(r, 416, "range_not_satisfiable")
    assert r.headers["content-range"] == "bytes */10000"
    assert_error(api.get(url, token=api.register("stranger")[0]), 404)
    assert_error(api.get(f"/api/projects/{project}/blocks/{sha(b'nope')}", token=viewer), 404)


def test_block_size_limit(api: Api, owner: str, project: str) -> None:
    data = b"\0" * (MAX_BLOCK_SIZE + 1)
    assert_error(put_block(api, owner, project, data), 413, "block_too_large")
    assert missing(api, owner, project, [sha(data)]) == [sha(data)]


def test_manifest_verification(api: Api, owner: str, project: str) -> None:
    data = os.urandom(300 * KiB)
    body = manifest_of(data, 128 * KiB)
    url = f"/api/projects/{project}/manifests"
    err = assert_error(api.post(url, token=owner, json=body), 409, "missing_blocks")
    assert err["missing"] == [b["hash"] for b in body["blocks"]]
    for block in split(data, 128 * KiB):
        put_block(api, owner, project, block)
    wrong_hash = {**body, "hash": sha(b"something else")}
    assert_error(api.post(url, token=owner, json=wrong_hash), 422, "hash_mismatch")
    swapped = {**body, "blocks": [body["blocks"][1], body["blocks"][0], body["blocks"][2]]}
    assert_error(api.post(url, token=owner, json=swapped), 422, "hash_mismatch")
    bad_sizes = {**body, "blocks": [{**body["blocks"][0], "size": 1000},
                                    {**body["blocks"][1], "size": 2 * 128 * KiB - 1000},
                                    body["blocks"][2]]}
    assert_error(api.post(url, token=owner, json=bad_sizes), 422, "block_size_mismatch")
    # Well-formed, but the numbers do not add up: 422, like the other content checks.
    assert_error(api.post(url, token=owner, json={**body, "size": 1}), 422, "invalid_manifest")
    assert_error(api.post(url, token=owner, json={**body, "size": "1"}), 400, "invalid_manifest")
    assert_error(api.get(f"{url}/{sha(data)}", token=owner), 404)
    r = api.post(url, token=owner, json=body)
    assert r.status_code == 201 and r.json()["manifest"] == body
    assert api.post(url, token=owner, json=body).status_code == 200
    viewer, _ = api.viewer(owner, project)
    assert api.get(f"{url}/{sha(data)}", token=viewer).json() == body


def test_whole_file_content_with_ranges(api: Api, owner: str, project: str) -> None:
    data = os.urandom(300 * KiB)
    assert store_file(api, owner, project, data, 128 * KiB).status_code == 201
    viewer, _ = api.viewer(owner, project)
    url = f"/api/projects/{project}/content/{sha(data)}"
    r = api.get(url, token=viewer)
    assert r.status_code == 200 and r.content == data and r.headers["etag"] == f'"{sha(data)}"'
    for start, end in [(0, 0), (131_000, 262_200), (128 * KiB, 256 * KiB - 1),
                       (len(data) - 1, len(data) - 1), (5, len(data) + 1000)]:
        r = api.get(url, token=viewer, headers={"Range": f"bytes={start}-{end}"})
        assert r.status_code == 206, (start, end)
        stop = min(end + 1, len(data))
        assert r.content == data[start:stop], (start, end)
        assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(data)}"
    assert_error(api.get(url, token=viewer, headers={"Range": f"bytes={len(data)}-"}), 416)
    r = api.get(url, token=viewer, headers={"Range": "bytes=0-1,5-6"})  # several: ignored
    assert r.status_code == 200 and r.content == data
    assert_error(api.get(f"/api/projects/{project}/content/{sha(b'nope')}", token=viewer), 404)


def test_empty_file(api: Api, owner: str, project: str) -> None:
    body = {"hash": EMPTY_HASH, "size": 0, "blocks": []}
    r = api.post(f"/api/projects/{project}/manifests", token=owner, json=body)
    assert r.status_code == 201, r.text
    r = api.get(f"/api/projects/{project}/content/{EMPTY_HASH}", token=owner)
    assert r.status_code == 200 and r.content == b""
    r = api.get(f"/api/projects/{project}/content/{EMPTY_HASH}", token=owner,
                headers={"Range": "bytes=0-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */0"
    r = api.post(f"/api/projects/{project}/files/update", token=owner, json={"changes": [
        {"path": "empty.txt", "op": "create", "hash": EMPTY_HASH, "size": 0}]})
    assert r.status_code == 200, r.text


def test_changes_need_stored_content(api: Api, owner: str, project: str) -> None:
    """files/update refuses a create/update whose content is missing or of another size, and
    appends nothing; deletes need no content."""
    stored = change("ok.mov", n=1, size=500)
    assert api.post_changes(owner, project, [stored]).status_code == 200
    url = f"/api/projects/{project}/files/update"
    unknown = {**stored, "path": "x.mov", "hash": sha(b"never uploaded")}
    err = assert_error(api.post(url, token=owner, json={"changes": [stored, unknown]}),
                       409, "content_missing")
    assert err["index"] == 1 and "changes[1]" in err["message"]
    wrong_size = {**stored, "path": "y.mov", "op": "update", "size": 499}
    err = assert_error(api.post(url, token=owner, json={"changes": [wrong_size]}),
                       409, "content_missing")
    assert err["index"] == 0 and "499" in err["message"]
    other_project = api.project(owner)  # content is per project
    err = assert_error(api.post(f"/api/projects/{other_project}/files/update", token=owner,
                                json={"changes": [stored]}), 409, "content_missing")
    r = api.post(url, token=owner, json={"changes": [change("ok.mov", op="delete")]})
    assert r.status_code == 200 and r.json()["last_seq"] == 2
    events = api.get(f"/api/projects/{project}/events", token=owner).json()["events"]
    assert [e["change"]["path"] for e in events] == ["ok.mov", "ok.mov"]


def test_limits(server_factory) -> None:
    server = server_factory(args=["--max-file-size", "300K", "--project-quota", "400K"])
    api = Api(server.url)
    owner, _ = api.register("owner")
    project = api.project(owner)
    big = os.urandom(301 * KiB)
    err = assert_error(api.post(f"/api/projects/{project}/manifests", token=owner,
                                json=manifest_of(big, 128 * KiB)), 413, "file_too_large")
    assert "--max-file-size" in err["message"]
    blocks = split(os.urandom(400 * KiB), 128 * KiB)  # 3 x 128 KiB + 16 KiB: exactly the quota
    for block in blocks:
        assert put_block(api, owner, project, block).status_code == 201
    assert put_block(api, owner, project, blocks[0]).status_code == 200  # dedup costs nothing
    err = assert_error(put_block(api, owner, project, b"one byte too many"), 413, "quota_exceeded")
    assert err["quota"] == 400 * KiB and err["usage"] == 400 * KiB
    # Another project has its own quota.
    assert put_block(api, owner, api.project(owner), b"fits").status_code == 201
    api.http.close()


def test_content_survives_restart(server_factory) -> None:
    server = server_factory()
    api = Api(server.url)
    owner, _ = api.register("owner")
    project = api.project(owner)
    data = os.urandom(200 * KiB)
    assert store_file(api, owner, project, data, 128 * KiB).status_code == 201
    server.kill()
    server.start()
    assert api.get(f"/api/projects/{project}/content/{sha(data)}", token=owner).content == data
    assert api.post_changes(owner, project, [{"path": "a", "op": "create", "hash": sha(data),
                                              "size": len(data)}]).status_code == 200
    api.http.close()


def test_deleting_a_project_removes_its_content(api: Api, server: ServerProcess, owner: str,
                                                project: str) -> None:
    put_block(api, owner, project, os.urandom(1000))
    assert block_files(server, project)
    assert api.delete(f"/api/projects/{project}", token=owner).status_code == 204
    assert not (server.data_dir / "blobs" / project).exists()


def test_an_interrupted_small_file_batch_accepts_none_of_it(tmp_path: Path) -> None:
    """A batch of small files that fails half-way through (here the 601st entry cannot be
    written, after 600 were written and handed to the fsync pool) leaves no manifest, so no file
    of it counts as stored, and no temporary file; the batch sent again is stored whole."""
    blobs = BlobStore(str(tmp_path / "blobs"), 2**40)
    files = [(sha(data), data) for data in (os.urandom(2048) for _ in range(1000))]
    with pytest.raises(TypeError):
        blobs.put_small_files("p1", [*files[:600], (sha(b"lost"), None), *files[600:]])
    assert [h for h, _ in files if blobs.has_manifest("p1", h)] == []
    assert os.listdir(blobs.tmp_dir("p1")) == []

    assert blobs.put_small_files("p1", files) == [True] * len(files)
    assert blobs.put_small_files("p1", files[:10]) == [False] * 10
    for h, data in files:
        manifest = blobs.get_manifest("p1", h)
        assert manifest is not None and manifest.size == len(data)
        assert b"".join(blobs.read_range("p1", manifest, 0, manifest.size)) == data
    assert os.listdir(blobs.tmp_dir("p1")) == []


def _batch(files: list[bytes]) -> dict:
    return {"files": [{"hash": sha(d), "data": base64.b64encode(d).decode()} for d in files]}


def test_a_one_block_file_is_stored_as_its_block_alone(api: Api, server: ServerProcess,
                                                       owner: str, project: str) -> None:
    """A batch of small files writes one file per frame (its block, no manifest file), and each
    is still a stored file: its manifest, its content, a change naming it, its history."""
    frames = [os.urandom(2000 + i) for i in range(50)]
    r = api.post(f"/api/projects/{project}/content-batch", token=owner, json=_batch(frames))
    assert r.status_code == 200 and r.json()["stored"] == len(frames), r.text
    root = server.data_dir / "blobs" / project
    assert not list(root.glob("manifests/*"))
    assert sorted(p.name for p in block_files(server, project)) == sorted(map(sha, frames))

    viewer, _ = api.viewer(owner, project)
    for data in frames[:5]:
        r = api.get(f"/api/projects/{project}/manifests/{sha(data)}", token=viewer)
        assert r.status_code == 200 and r.json() == manifest_of(data, MAX_BLOCK_SIZE)
        r = api.get(f"/api/projects/{project}/content/{sha(data)}", token=viewer)
        assert r.status_code == 200 and r.content == data
        r = api.get(f"/api/projects/{project}/content/{sha(data)}", token=viewer,
                    headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == data[10:20]
    changes = [{"path": f"seq/{i:04d}.exr", "op": "create", "hash": sha(d), "size": len(d)}
               for i, d in enumerate(frames)]
    assert api.post_changes(owner, project, changes).status_code == 200
    wrong = {**changes[0], "path": "wrong.exr", "size": len(frames[0]) + 1}
    assert_error(api.post(f"/api/projects/{project}/files/update", token=owner,
                          json={"changes": [wrong]}), 409, "content_missing")
    r = api.get(f"/api/projects/{project}/files/history", token=viewer,
                params={"path": "seq/0000.exr"})
    assert [v["available"] for v in r.json()["versions"]] == [True]
    # The empty file needs nothing stored at all.
    r = api.post(f"/api/projects/{project}/content-batch", token=owner, json=_batch([b""]))
    assert r.status_code == 200 and r.json()["files"] == [{"hash": EMPTY_HASH, "stored": False}]
    assert not list(root.glob("manifests/*"))
    r = api.get(f"/api/projects/{project}/content/{EMPTY_HASH}", token=viewer)
    assert r.status_code == 200 and r.content == b""


def test_a_one_block_manifest_posted_writes_no_manifest_file(api: Api, server: ServerProcess,
                                                            owner: str, project: str) -> None:
    """The upload path (manifest, block, manifest again) ends as the batch does: the block."""
    data = os.urandom(5000)
    url = f"/api/projects/{project}/manifests"
    body = manifest_of(data, 128 * KiB)
    assert_error(api.post(url, token=owner, json=body), 409, "missing_blocks")
    assert put_block(api, owner, project, data).status_code == 201
    r = api.post(url, token=owner, json=body)
    assert r.status_code == 201 and r.json()["manifest"] == body
    assert api.post(url, token=owner, json={**body, "size": 4999, "blocks": [
        {"hash": sha(data), "size": 4999}]}).status_code == 422  # the block says otherwise
    assert not list((server.data_dir / "blobs" / project).glob("manifests/*"))
    assert api.get(f"{url}/{sha(data)}", token=owner).json() == body
    assert api.post_changes(owner, project, [{"path": "a.txt", "op": "create",
                                              "hash": sha(data), "size": 5000}]).status_code == 200


def test_a_one_block_manifest_file_of_an_older_store_is_still_read(
        api: Api, server: ServerProcess, owner: str, project: str) -> None:
    """Stores written before one-block files lost their manifest file hold both; the block
    and that manifest file read as before, and a batch sending the file again stores nothing."""
    data = os.urandom(3000)
    blobs = BlobStore(str(server.data_dir / "blobs"), 2**40)
    assert put_block(api, owner, project, data).status_code == 201
    manifest = manifest_of(data, 128 * KiB)
    path = Path(blobs.manifest_path(project, sha(data)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(manifest))
    assert api.get(f"/api/projects/{project}/manifests/{sha(data)}", token=owner).json() \
        == manifest
    assert api.get(f"/api/projects/{project}/content/{sha(data)}", token=owner).content == data
    r = api.post(f"/api/projects/{project}/content-batch", token=owner, json=_batch([data]))
    assert r.json()["stored"] == 0
    assert api.post_changes(owner, project, [{"path": "old.txt", "op": "create",
                                              "hash": sha(data), "size": 3000}]).status_code == 200
    assert path.read_bytes() == orjson.dumps(manifest)  # left as it was


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files fsynced in this process from now on (in the order fsynced)."""
    names: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        names.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return names


async def _chunks(data: bytes):
    yield data


@pytest.mark.asyncio
async def test_a_change_naming_a_block_sent_alone_makes_it_durable_first(
        tmp_path: Path, fsynced: list[str]) -> None:
    """A one-block file sent with PUT and then named by a change, with no manifest posted: the
    block is fsynced before the change is accepted (its manifest is implied, so no manifest post
    did it), once; a file with a manifest file and a size this node just stored are not."""
    from vidsync.changes import Change
    from vidsync.content.config import ContentConfig
    from vidsync.server.content import ContentService

    svc = ContentService(ContentConfig(), str(tmp_path))
    pid = "p" * 16
    small = os.urandom(1000)
    await svc.blobs.put_block(pid, sha(small), _chunks(small), len(small))
    assert sha(small) not in fsynced  # a PUT starts the writeback only
    await svc.check_changes(pid, [Change("a.exr", "create", sha(small), len(small), 1)])
    assert fsynced.count(sha(small)) == 1
    await svc.check_changes(pid, [Change("b.exr", "create", sha(small), len(small), 1)])
    assert fsynced.count(sha(small)) == 1  # checked by this node now: not again

    data = os.urandom(3 * 128 * 1024)
    for block in split(data, 128 * 1024):
        await svc.blobs.put_block(pid, sha(block), _chunks(block), len(block))
    big = Manifest.from_json(manifest_of(data, 128 * 1024))
    svc.blobs.put_manifest(pid, big)
    fsynced.clear()
    fresh = ContentService(ContentConfig(), str(tmp_path))  # as after a restart: nothing cached
    await fresh.check_changes(pid, [Change("c.mov", "create", big.hash, big.size, 1)])
    assert fsynced == []  # its manifest file was written after its blocks' fsync
    with pytest.raises(Exception, match="not stored"):
        await fresh.check_changes(pid, [Change("d.exr", "create", "0" * 64, 5, 1)])


@pytest.mark.asyncio
async def test_a_manifest_fsyncs_only_blocks_not_already_fsynced_as_they_are(
        tmp_path: Path, fsynced: list[str]) -> None:
    """An edit's manifest names the blocks of the version before: those this process fsynced,
    still the same files (inode and ctime), are not fsynced again; a block replaced since is."""
    blobs = BlobStore(str(tmp_path / "blobs"), 2**40)
    pid = "p" * 16
    size = 128 * 1024
    v1 = os.urandom(3 * size)
    v2 = v1[:2 * size] + os.urandom(size)
    for block in split(v1, size) + split(v2, size)[2:]:
        await blobs.put_block(pid, sha(block), _chunks(block), len(block))
    first, second = (Manifest.from_json(manifest_of(v, size)) for v in (v1, v2))

    def blocks_fsynced() -> list[str]:  # leaving out the manifest's own file and folder
        return [name for name in fsynced if len(name) == 64]

    assert blobs.put_manifest(pid, first)
    assert sorted(blocks_fsynced()) == sorted(sha(b) for b in split(v1, size))
    fsynced.clear()
    assert blobs.put_manifest(pid, second)
    assert blocks_fsynced() == [sha(v2[2 * size:])]  # the new block alone

    # Block 0 deleted and sent again (as after a collection): a new file, fsynced again.
    os.unlink(blobs.block_path(pid, sha(v1[:size])))
    await blobs.put_block(pid, sha(v1[:size]), _chunks(v1[:size]), size)
    os.unlink(blobs.manifest_path(pid, first.hash))
    fsynced.clear()
    assert blobs.put_manifest(pid, first)
    assert blocks_fsynced() == [sha(v1[:size])]
