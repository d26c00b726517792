"""The event log over HTTP: seq numbering under concurrency, idempotency, NFC paths, the /files
snapshot, /events paging, long-polling and path filters."""

from __future__ import annotations

import random
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import Api, ServerProcess, change

from server.helpers import all_events, assert_error


def test_concurrent_posts_get_gap_free_unique_seqs(server: ServerProcess, api: Api, owner, project) -> None:
    token, _ = owner
    clients, posts = 8, 50

    def poster(client: int) -> list[dict]:
        rng = random.Random(client)
        own = Api(server.url)
        responses = []
        try:
            for i in range(posts):
                batch = [change(f"c{client}/p{i}/{j}.mov", n=j % 3) for j in range(rng.randint(1, 8))]
                r = own.post_changes(token, project, batch)
                assert r.status_code == 200, r.text
                responses.append(r.json())
        finally:
            own.http.close()
        return responses

    with ThreadPoolExecutor(clients) as pool:
        responses = [r for rs in pool.map(poster, range(clients)) for r in rs]

    seen: dict[int, str] = {}
    for body in responses:
        seqs = [x["seq"] for x in body["results"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a batch's seqs are consecutive"
        assert body["last_seq"] >= seqs[-1]
        for x in body["results"]:
            assert x["seq"] not in seen, f"seq {x['seq']} given twice"
            seen[x["seq"]] = x["path"]
    total = len(seen)
    assert sorted(seen) == list(range(1, total + 1))
    events = all_events(api, token, project)
    assert [e["seq"] for e in events] == list(range(1, total + 1))
    assert {e["seq"]: e["change"]["path"] for e in events} == seen
    assert api.get(f"/api/projects/{project}/files", token=token).json()["seq"] == total


def test_idempotent_retry(api: Api, owner, project) -> None:
    token, _ = owner
    batch = [change("a.mov"), change("b.mov", n=1)]
    first = api.post_changes(token, project, batch, key="upload-1")
    assert first.status_code == 200, first.text
    again = api.post_changes(token, project, batch, key="upload-1")
    assert again.status_code == 200 and again.json() == first.json()
    assert [e["seq"] for e in all_events(api, token, project)] == [1, 2]

    other = api.post_changes(token, project, [change("c.mov")], key="upload-1")
    assert_error(other, 422, "idempotency_key_reused")
    assert [e["seq"] for e in all_events(api, token, project)] == [1, 2]
    # A new key appends; keys belong to one project.
    assert api.post_changes(token, project, batch, key="upload-2").json()["last_seq"] == 4
    project2 = api.project(token, "second")
    assert api.post_changes(token, project2, batch, key="upload-1").json()["last_seq"] == 2


def test_concurrent_retries_append_once(server: ServerProcess, api: Api, owner, project) -> None:
    token, _ = owner
    batch = [change(f"r/{i}.mov") for i in range(5)]
    barrier = threading.Barrier(6)

    def post(_: int) -> dict:
        own = Api(server.url)
        try:
            barrier.wait()
            r = own.post_changes(token, project, batch, key="same-key")
            assert r.status_code == 200, r.text
            return r.json()
        finally:
            own.http.close()

    with ThreadPoolExecutor(6) as pool:
        bodies = list(pool.map(post, range(6)))
    assert all(b == bodies[0] for b in bodies)
    assert [e["seq"] for e in all_events(api, token, project)] == [1, 2, 3, 4, 5]


def test_paths_are_stored_in_nfc(api: Api, owner, project) -> None:
    token, _ = owner
    nfd = unicodedata.normalize("NFD", "clips/Café/Ånd.mov")
    nfc = unicodedata.normalize("NFC", nfd)
    assert nfd != nfc
    r = api.post_changes(token, project, [change(nfd)])
    assert r.json()["results"][0]["path"] == nfc
    assert all_events(api, token, project)[0]["change"]["path"] == nfc
    # The NFC and NFD spellings name one file.
    api.post_changes(token, project, [change(nfc, "update", n=2)])
    files = api.get(f"/api/projects/{project}/files", token=token).json()["files"]
    assert [(f["path"], f["seq"]) for f in files] == [(nfc, 2)]
    api.post_changes(token, project, [change(nfd, "delete")])
    assert api.get(f"/api/projects/{project}/files", token=token).json()["files"] == []
    r = api.get(f"/api/projects/{project}/events", params={"paths": "clips/Cafe\u0301"}, token=token)
    assert [e["seq"] for e in r.json()["events"]] == [1, 2, 3]


def test_files_snapshot(api: Api, owner, project) -> None:
    token, _ = owner
    url = f"/api/projects/{project}/files"
    assert api.get(url, token=token).json() == {"files": [], "seq": 0}
    a, b, c = change("a.mov"), change("b/b.mov", n=1), change("c.mov", n=2)
    api.post_changes(token, project, [a, b, c])
    b2 = change("b/b.mov", "update", n=3, size=7)
    api.post_changes(token, project, [b2])
    api.post_changes(token, project, [change("c.mov", "delete")])
    api.post_changes(token, project, [change("d.mov"), change("d.mov", "delete"), change("e.mov", n=4)])
    body = api.get(url, token=token).json()
    assert body["seq"] == 8
    assert body["files"] == [
        {"path": "a.mov", "hash": a["hash"], "size": a["size"], "mtime": a["mtime"], "seq": 1},
        {"path": "b/b.mov", "hash": b2["hash"], "size": 7, "mtime": b2["mtime"], "seq": 4},
        {"path": "e.mov", "hash": body["files"][2]["hash"], "size": 1, "mtime": body["files"][2]["mtime"],
         "seq": 8},
    ]
    # Re-creating a deleted file brings it back with the new seq.
    api.post_changes(token, project, [change("c.mov", n=2)])
    files = {f["path"]: f["seq"] for f in api.get(url, token=token).json()["files"]}
    assert files == {"a.mov": 1, "b/b.mov": 4, "c.mov": 9, "e.mov": 8}


def test_events_paging(api: Api, owner, project) -> None:
    token, _ = owner
    posted = [change(f"f{i:02}.mov", n=i % 3) for i in range(25)]
    api.post_changes(token, project, posted[:10])
    api.post_changes(token, project, posted[10:])
    url = f"/api/projects/{project}/events"

    body = api.get(url, params={"limit": 10}, token=token).json()
    assert [e["seq"] for e in body["events"]] == list(range(1, 11))
    assert body["has_more"] is True and body["last_seq"] == 25
    event = body["events"][0]
    assert event["project_id"] == project and event["change"] == posted[0]
    assert event["created_at"].endswith("Z") and "T" in event["created_at"]

    body = api.get(url, params={"since_seq": 10, "limit": 10}, token=token).json()
    assert [e["seq"] for e in body["events"]] == list(range(11, 21)) and body["has_more"] is True
    body = api.get(url, params={"since_seq": 20, "limit": 10}, token=token).json()
    assert [e["seq"] for e in body["events"]] == list(range(21, 26)) and body["has_more"] is False
    body = api.get(url, params={"since_seq": 15, "limit": 10}, token=token).json()
    assert [e["seq"] for e in body["events"]] == list(range(16, 26)) and body["has_more"] is False
    for since in (25, 1000):
        assert api.get(url, params={"since_seq": since}, token=token).json() == {
            "events": [], "last_seq": 25, "has_more": False}
    # Default limit is 100, so a default read gets everything here.
    body = api.get(url, token=token).json()
    assert [e["change"] for e in body["events"]] == posted and body["has_more"] is False


def test_long_poll_returns_when_an_event_is_posted(server: ServerProcess, api: Api, owner, project) -> None:
    token, _ = owner
    api.post_changes(token, project, [change("first.mov")])
    result: dict = {}

    def wait() -> None:
        reader = Api(server.url)
        start = time.monotonic()
        r = reader.get(f"/api/projects/{project}/events", params={"since_seq": 1, "wait": 10},
                       token=token)
        result.update(body=r.json(), took=time.monotonic() - start)
        reader.http.close()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.5)
    posted_at = time.monotonic()
    api.post_changes(token, project, [change("second.mov")])
    thread.join(15)
    assert [e["seq"] for e in result["body"]["events"]] == [2]
    assert result["took"] < 0.5 + 2, result["took"]
    assert time.monotonic() - posted_at < 2


def test_long_poll_times_out_empty(api: Api, owner, project) -> None:
    token, _ = owner
    api.post_changes(token, project, [change("only.mov")])
    start = time.monotonic()
    r = api.get(f"/api/projects/{project}/events", params={"since_seq": 1, "wait": 1}, token=token)
    took = time.monotonic() - start
    assert r.json() == {"events": [], "last_seq": 1, "has_more": False}
    assert 0.95 <= took < 3, took
    # With events already there, wait= does not wait at all.
    start = time.monotonic()
    r = api.get(f"/api/projects/{project}/events", params={"since_seq": 0, "wait": 10}, token=token)
    assert [e["seq"] for e in r.json()["events"]] == [1] and time.monotonic() - start < 1


@pytest.fixture
def tree(api: Api, owner, project) -> tuple[str, str]:
    token, _ = owner
    api.post_changes(token, project, [
        change("clips/a.mov"), change("audio/b.wav", n=1), change("clipsX/c.mov", n=2),
        change("clips/deep/d.mov"), change("root.txt", n=1), change("audio2/e.wav"),
    ])
    api.post_changes(token, project, [change("clips/a.mov", "delete"), change("docs/f.txt")])
    return token, project


def test_paths_filter_events(api: Api, tree) -> None:
    token, project = tree
    url = f"/api/projects/{project}/events"
    for paths in ("clips/,audio/", "clips,audio", "audio/,clips/,"):
        body = api.get(url, params={"paths": paths}, token=token).json()
        assert [(e["seq"], e["change"]["path"]) for e in body["events"]] == [
            (1, "clips/a.mov"), (2, "audio/b.wav"), (4, "clips/deep/d.mov"), (7, "clips/a.mov")]
        assert body["last_seq"] == 8 and body["has_more"] is False
    body = api.get(url, params={"paths": "clips/", "limit": 2}, token=token).json()
    assert [e["seq"] for e in body["events"]] == [1, 4] and body["has_more"] is True
    body = api.get(url, params={"paths": "clips/", "since_seq": 4}, token=token).json()
    assert [e["seq"] for e in body["events"]] == [7] and body["has_more"] is False
    body = api.get(url, params={"paths": "clips/deep/"}, token=token).json()
    assert [e["seq"] for e in body["events"]] == [4]
    body = api.get(url, params={"paths": "nothing/"}, token=token).json()
    assert body == {"events": [], "last_seq": 8, "has_more": False}


def test_paths_filter_files(api: Api, tree) -> None:
    token, project = tree
    url = f"/api/projects/{project}/files"
    body = api.get(url, params={"paths": "clips/,audio/"}, token=token).json()
    assert [f["path"] for f in body["files"]] == ["audio/b.wav", "clips/deep/d.mov"]
    assert body["seq"] == 8
    assert [f["path"] for f in api.get(url, params={"paths": "clipsX"}, token=token).json()["files"]] == [
        "clipsX/c.mov"]
    assert [f["path"] for f in api.get(url, token=token).json()["files"]] == [
        "audio/b.wav", "audio2/e.wav", "clips/deep/d.mov", "clipsX/c.mov", "docs/f.txt", "root.txt"]


def test_files_by_folder(api: Api, tree) -> None:
    token, project = tree
    url = f"/api/projects/{project}/files"
    api.post_changes(token, project, [change("clips/deep/g.mov", n=3, size=5),
                                      change("clips/deep/er/h.mov", n=4, size=2)])
    whole = {f["path"]: f for f in api.get(url, token=token).json()["files"]}

    def listing(folder: str, **params: str) -> dict:
        r = api.get(url, params={"dir": folder, **params}, token=token)
        assert r.status_code == 200, r.text
        return r.json()

    def totals(prefix: str) -> dict:
        inside = [f for p, f in whole.items() if p.startswith(prefix)]
        return {"path": prefix, "file_count": len(inside), "size": sum(f["size"] for f in inside),
                "mtime": max(f["mtime"] for f in inside)}

    root = listing("/")
    assert root["seq"] == 10
    assert root["files"] == [whole["root.txt"]]
    assert root["folders"] == [totals(p) for p in ("audio/", "audio2/", "clips/", "clipsX/", "docs/")]
    # 'clips' and 'clips/' name the folder; its deep folder counts everything under it.
    for name in ("clips", "clips/"):
        body = listing(name)
        assert body["files"] == [] and body["folders"] == [totals("clips/deep/")]
    assert totals("clips/deep/")["file_count"] == 3
    body = listing("clips/deep/")
    assert [f["path"] for f in body["files"]] == ["clips/deep/d.mov", "clips/deep/g.mov"]
    assert body["files"][1] == whole["clips/deep/g.mov"]
    assert body["folders"] == [totals("clips/deep/er/")]
    # A folder that holds nothing (or is a file) lists empty, as of the log's end.
    assert listing("nothing/") == {"files": [], "folders": [], "seq": 10}
    assert listing("root.txt") == {"files": [], "folders": [], "seq": 10}
    # With paths=, only what is under those prefixes.
    body = listing("/", paths="clips/deep/er,docs")
    assert body["files"] == []
    assert body["folders"] == [{**totals("clips/deep/er/"), "path": "clips/"}, totals("docs/")]
    # Deleting a folder's last file removes it from its parent's listing.
    api.post_changes(token, project, [change("docs/f.txt", "delete")])
    assert [f["path"] for f in listing("/")["folders"]] == ["audio/", "audio2/", "clips/", "clipsX/"]


@pytest.mark.parametrize("folder", ["../x", "/a", "a/../b", "a\\b", "", ".vidsync/", "a//b/"])
def test_files_by_folder_refuses_bad_dir(api: Api, owner, project, folder: str) -> None:
    token, _ = owner
    r = api.get(f"/api/projects/{project}/files", params={"dir": folder}, token=token)
    assert_error(r, 400, "invalid_path")


def test_files_by_folder_needs_membership(api: Api, owner, project) -> None:
    token, _ = owner
    api.post_changes(token, project, [change("a/b.mov")])
    url = f"/api/projects/{project}/files"
    assert_error(api.get(url, params={"dir": "a/"}), 401)
    stranger, _ = api.register("stranger")
    assert_error(api.get(url, params={"dir": "a/"}, token=stranger), 404)


def test_files_by_folder_with_many_folders(api: Api, owner, project) -> None:
    """More subfolders than a listing seeks one by one (the SQLite store groups the rest)."""
    token, _ = owner
    paths = [f"many/f{i:03d}/{name}" for i in range(130) for name in ["a.mov", "b/c.mov"][:1 + i % 2]]
    api.post_changes(token, project, [change(p, n=i % 5, size=1 + i % 3) for i, p in enumerate(paths)]
                     + [change("many/top.txt"), change("many0.txt")])
    whole = api.get(f"/api/projects/{project}/files", token=token).json()["files"]
    body = api.get(f"/api/projects/{project}/files", params={"dir": "many/"}, token=token).json()
    assert [f["path"] for f in body["files"]] == ["many/top.txt"]
    expected = []
    for i in range(130):
        inside = [f for f in whole if f["path"].startswith(f"many/f{i:03d}/")]
        expected.append({"path": f"many/f{i:03d}/", "file_count": len(inside),
                         "size": sum(f["size"] for f in inside), "mtime": max(f["mtime"] for f in inside)})
    assert body["folders"] == expected
