"""Small files in batches: POST content-batch stores many files at once (each hash checked),
content-batch/get reads many back; limits and bad input answer 4xx JSON and store nothing."""

from __future__ import annotations

import base64
import hashlib

from harness import content

from server.helpers import assert_error
from vidsync.content.batches import MAX_BATCH_BODY, MAX_BATCH_FILE_SIZE, MAX_BATCH_FILES


def _entry(data: bytes) -> dict:
    return {"hash": hashlib.sha256(data).hexdigest(), "data": base64.b64encode(data).decode()}


def _frames(n: int, size: int = 2048, seed: int = 0) -> list[bytes]:
    return [content(seed * 100_000 + i, size) + i.to_bytes(4, "big") for i in range(n)]


def test_batch_round_trip(api, server) -> None:
    token, _ = api.register("owner")
    pid = api.project(token)
    files = [*_frames(300), b"", content(7, MAX_BATCH_FILE_SIZE)]
    base = f"/api/projects/{pid}/content-batch"
    r = api.post(base, token=token, json={"files": [_entry(d) for d in files]})
    assert r.status_code == 200, r.text
    # Each file new but the empty one, which needs nothing stored (its manifest is implied).
    assert r.json()["stored"] == len(files) - 1
    assert [f["stored"] for f in r.json()["files"]] == [d != b"" for d in files]
    again = api.post(base, token=token, json={"files": [_entry(d) for d in files[:10]]})
    assert again.status_code == 200 and again.json()["stored"] == 0

    # Posted as changes: the server holds the content at the right size.
    changes = [{"path": f"seq/f.{i:05d}.exr", "op": "create",
                "hash": hashlib.sha256(d).hexdigest(), "size": len(d), "mtime": 1}
               for i, d in enumerate(files)]
    r = api.post(f"/api/projects/{pid}/files/update", token=token, json={"changes": changes})
    assert r.status_code == 200, r.text
    one = api.get(f"/api/projects/{pid}/content/{changes[5]['hash']}", token=token)
    assert one.content == files[5]

    viewer, _ = api.viewer(token, pid)
    big = content(8, MAX_BATCH_FILE_SIZE + 1)
    assert api.upload(token, pid, big)
    unknown = hashlib.sha256(b"never stored").hexdigest()
    asked = [c["hash"] for c in changes] + [hashlib.sha256(big).hexdigest(), unknown]
    r = api.post(base + "/get", token=viewer, json={"hashes": asked[:MAX_BATCH_FILES]})
    assert r.status_code == 200, r.text
    got = {f["hash"]: base64.b64decode(f["data"]) for f in r.json()["files"]}
    assert got == {hashlib.sha256(d).hexdigest(): d for d in files}
    assert r.json()["too_large"] == [hashlib.sha256(big).hexdigest()]
    assert r.json()["missing"] == [unknown]


def test_tampered_file_refuses_the_whole_batch(api) -> None:
    token, _ = api.register("owner")
    pid = api.project(token)
    entries = [_entry(d) for d in _frames(20, seed=1)]
    entries[13]["data"] = base64.b64encode(b"not the frame its hash names").decode()
    r = api.post(f"/api/projects/{pid}/content-batch", token=token, json={"files": entries})
    assert assert_error(r, 422, "hash_mismatch")["index"] == 13
    r = api.post(f"/api/projects/{pid}/content-batch/get", token=token,
                 json={"hashes": [e["hash"] for e in entries]})
    assert r.json()["files"] == [] and len(r.json()["missing"]) == 20  # nothing stored


def test_batch_limits_and_bad_input(api) -> None:
    token, _ = api.register("owner")
    pid = api.project(token)
    base = f"/api/projects/{pid}/content-batch"
    ok = _entry(b"frame")

    def put(body: object, **kw) -> object:
        return api.post(base, token=token, json=body, **kw)

    assert_error(put({"files": []}), 400, "invalid_files")
    assert_error(put({"files": [ok] * (MAX_BATCH_FILES + 1)}), 400, "invalid_files")
    assert_error(put({"files": [{"hash": "x" * 64, "data": ""}]}), 400, "invalid_files")
    assert_error(put({"files": [{"hash": ok["hash"], "data": "***"}]}), 400, "invalid_files")
    assert_error(put({"files": "all"}), 400, "invalid_files")
    assert_error(put([1, 2]), 400, "invalid_files")
    err = assert_error(put({"files": [ok, _entry(content(1, MAX_BATCH_FILE_SIZE + 1))]}), 413,
                       "file_too_large")
    assert err["index"] == 1
    # 129 files of 128 KiB: more content than a batch carries.
    assert_error(put({"files": [_entry(content(i, MAX_BATCH_FILE_SIZE)) for i in range(129)]}),
                 413, "batch_too_large")
    r = api.post(base, token=token, content=b"{" + b" " * (MAX_BATCH_BODY + 1) + b"}",
                 headers={"Content-Type": "application/json"})
    assert_error(r, 413, "batch_too_large")
    r = api.post(base, token=token, content=b"{not json",
                 headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")
    r = api.post(base, token=token, content=b"{}", headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")

    get = base + "/get"
    assert_error(api.post(get, token=token, json={"hashes": []}), 400, "invalid_hashes")
    assert_error(api.post(get, token=token, json={"hashes": ["nope"]}), 400, "invalid_hashes")
    assert_error(api.post(get, token=token, json={"hashes": [ok["hash"]] * 1001}), 400,
                 "invalid_hashes")
    # Asking for more than a batch carries: 129 stored files of 128 KiB.
    big = [content(100 + i, MAX_BATCH_FILE_SIZE) for i in range(129)]
    for part in (big[:100], big[100:]):
        assert put({"files": [_entry(d) for d in part]}).status_code == 200
    r = api.post(get, token=token, json={"hashes": [hashlib.sha256(d).hexdigest() for d in big]})
    assert_error(r, 413, "batch_too_large")


def test_batch_roles(api) -> None:
    owner, _ = api.register("owner")
    pid = api.project(owner)
    viewer, _ = api.viewer(owner, pid)
    stranger, _ = api.register("stranger")
    body = {"files": [_entry(b"frame")]}
    base = f"/api/projects/{pid}/content-batch"
    assert_error(api.post(base, token=viewer, json=body), 403)
    assert api.post(base, token=stranger, json=body).status_code in (403, 404)
    assert api.post(base, json=body).status_code == 401
    r = api.post(base + "/get", token=stranger, json={"hashes": [body["files"][0]["hash"]]})
    assert r.status_code in (403, 404)
    editor, _ = api.editor(owner, pid)
    assert api.post(base, token=editor, json=body).status_code == 200
