"""Version history, deleted files and restore over HTTP (a real server, SQLite or PostgreSQL)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import CONTENTS, Api, change

from server.helpers import assert_error


@pytest.fixture
def token(owner: tuple[str, dict]) -> str:
    return owner[0]


def post(api: Api, token: str, project: str, changes: list[dict]) -> list[int]:
    r = api.post_changes(token, project, changes)
    assert r.status_code == 200, r.text
    return [x["seq"] for x in r.json()["results"]]


def history(api: Api, token: str, project: str, path: str, **params) -> dict:
    r = api.get(f"/api/projects/{project}/files/history", token=token,
                params={"path": path, **params})
    assert r.status_code == 200, r.text
    return r.json()


def restore(api: Api, token: str, project: str, path: str, seq: int, **kw):
    return api.post(f"/api/projects/{project}/files/restore", token=token,
                    json={"path": path, "seq": seq}, **kw)


def live(api: Api, token: str, project: str) -> dict[str, dict]:
    r = api.get(f"/api/projects/{project}/files", token=token)
    return {f["path"]: f for f in r.json()["files"]}


def download(api: Api, token: str, project: str, digest: str) -> bytes:
    r = api.get(f"/api/projects/{project}/content/{digest}", token=token)
    assert r.status_code == 200, r.text
    return r.content


def last_seq(api: Api, token: str, project: str) -> int:
    return api.get(f"/api/projects/{project}", token=token).json()["project"]["last_seq"]


def test_three_versions_then_delete_each_restores(api: Api, token: str, project: str,
                                                  owner: tuple[str, dict]) -> None:
    versions = [change("cut.mov", "create", 1, 3000), change("cut.mov", "update", 2, 5000),
                change("cut.mov", "update", 3, 100)]
    seqs = [post(api, token, project, [v])[0] for v in versions]
    delete_seq = post(api, token, project, [change("cut.mov", "delete")])[0]

    h = history(api, token, project, "cut.mov")
    assert [v["seq"] for v in h["versions"]] == [delete_seq, *reversed(seqs)]
    assert h["has_more"] is False
    assert h["versions"][0] | {"created_at": None} == {
        "seq": delete_seq, "path": "cut.mov", "op": "delete", "hash": None, "size": None,
        "mtime": None, "author": {"id": owner[1]["id"], "name": owner[1]["name"]},
        "created_at": None, "available": False}
    for v, sent in zip(h["versions"][1:], reversed(versions), strict=True):
        assert (v["hash"], v["size"], v["mtime"], v["available"]) == (
            sent["hash"], sent["size"], sent["mtime"], True)

    deleted = api.get(f"/api/projects/{project}/files/deleted", token=token).json()
    assert [d["path"] for d in deleted["files"]] == ["cut.mov"]
    assert deleted["files"][0]["deleted_seq"] == delete_seq
    assert deleted["files"][0]["last_version"]["seq"] == seqs[-1]

    for seq, sent in zip(seqs, versions, strict=True):
        before = last_seq(api, token, project)
        r = restore(api, token, project, "cut.mov", seq)
        assert r.status_code == 200, r.text
        assert r.json()["last_seq"] == before + 1
        now = live(api, token, project)["cut.mov"]
        assert (now["hash"], now["size"], now["mtime"]) == (sent["hash"], sent["size"],
                                                            sent["mtime"])
        assert download(api, token, project, now["hash"]) == CONTENTS[sent["hash"]]
    # Restoring what is already live appends nothing.
    before = last_seq(api, token, project)
    r = restore(api, token, project, "cut.mov", seqs[-1])
    assert r.status_code == 200 and r.json() == {"results": [], "last_seq": before}
    # The first restore recreated a deleted file: the deleted list no longer has it.
    assert api.get(f"/api/projects/{project}/files/deleted", token=token).json()["files"] == []


def test_folder_restore_matches_what_it_held(api: Api, token: str, project: str) -> None:
    post(api, token, project, [change("a/one", "create", 1, 10), change("a/two", "create", 2, 20),
                               change("b/other", "create", 3, 30)])
    as_of = last_seq(api, token, project)
    post(api, token, project, [change("a/one", "update", 4, 40), change("a/two", "delete"),
                               change("a/three", "create", 5, 50),
                               change("b/other", "update", 6, 60)])
    before = live(api, token, project)

    r = restore(api, token, project, "a/", as_of)
    assert r.status_code == 200, r.text
    assert sorted((x["path"], x["op"]) for x in r.json()["results"]) == [
        ("a/one", "update"), ("a/three", "delete"), ("a/two", "create")]
    after = live(api, token, project)
    assert {p: f["hash"] for p, f in after.items() if p.startswith("a/")} == {
        "a/one": change("a/one", "create", 1, 10)["hash"],
        "a/two": change("a/two", "create", 2, 20)["hash"]}
    assert after["b/other"] == before["b/other"]  # outside the folder: untouched
    # Folder history by prefix, and the restore's events are in it.
    h = history(api, token, project, "a/", limit=3)
    assert h["has_more"] is True and [v["path"] for v in h["versions"]] == [
        x["path"] for x in reversed(r.json()["results"])]
    page2 = history(api, token, project, "a/", before_seq=h["versions"][-1]["seq"], limit=1000)
    assert all(v["seq"] < h["versions"][-1]["seq"] for v in page2["versions"])
    assert len(h["versions"]) + len(page2["versions"]) == 8
    # The whole project as of the start: '/'.
    r = restore(api, token, project, "/", as_of)
    assert r.status_code == 200, r.text
    assert {p: f["hash"] for p, f in live(api, token, project).items()} == {
        "a/one": change("a/one", "create", 1, 10)["hash"],
        "a/two": change("a/two", "create", 2, 20)["hash"],
        "b/other": change("b/other", "create", 3, 30)["hash"]}


def test_bad_restores_append_nothing(api: Api, token: str, project: str) -> None:
    first = post(api, token, project, [change("x.txt", "create", 1, 10),
                                       change("y.txt", "create", 2, 10)])
    deleted = post(api, token, project, [change("x.txt", "delete")])[0]
    before = last_seq(api, token, project)
    assert_error(restore(api, token, project, "x.txt", first[1]), 404, "not_a_version")  # y's
    assert_error(restore(api, token, project, "x.txt", deleted), 404, "not_a_version")
    assert_error(restore(api, token, project, "x.txt", 999), 404, "not_a_version")
    assert_error(restore(api, token, project, "../x.txt", first[0]), 400, "invalid_path")
    assert_error(restore(api, token, project, "/etc/passwd", first[0]), 400, "invalid_path")
    assert_error(restore(api, token, project, ".vidsync/state", first[0]), 400, "invalid_path")
    assert_error(restore(api, token, project, "a/", 999), 422, "invalid_seq")
    assert_error(restore(api, token, project, "x.txt", 0), 400, "invalid_seq")
    assert_error(restore(api, token, project, "x.txt", "1"), 400, "invalid_seq")
    assert_error(api.post(f"/api/projects/{project}/files/restore", token=token,
                          json={"path": "x.txt", "seq": 1, "extra": 1}), 400, "invalid_body")
    assert_error(api.post(f"/api/projects/{project}/files/restore", token=token,
                          json=["x.txt"]), 400, "invalid_body")
    viewer, _ = api.viewer(token, project)
    assert_error(restore(api, viewer, project, "x.txt", first[0]), 403, "forbidden")
    editor, editor_user = api.editor(token, project)
    stranger, _ = api.register("stranger")
    assert_error(restore(api, stranger, project, "x.txt", first[0]), 404)
    assert_error(api.get(f"/api/projects/{project}/files/history", token=stranger,
                         params={"path": "x.txt"}), 404)
    assert_error(api.get(f"/api/projects/{project}/files/history", token=token), 400,
                 "invalid_path")
    assert_error(api.get(f"/api/projects/{project}/files/history", token=token,
                         params={"path": "a/../b"}), 400, "invalid_path")
    assert last_seq(api, token, project) == before
    # A viewer reads history; an editor restores, and is the new version's author.
    assert history(api, viewer, project, "x.txt")["versions"][0]["seq"] == deleted
    r = restore(api, editor, project, "x.txt", first[0])
    assert r.status_code == 200, r.text
    newest = history(api, viewer, project, "x.txt")["versions"][0]
    assert newest["op"] == "create" and newest["author"] == {"id": editor_user["id"],
                                                             "name": editor_user["name"]}


def test_restore_is_idempotent_with_a_key(api: Api, token: str, project: str) -> None:
    seqs = post(api, token, project, [change("k", "create", 1, 10)])
    post(api, token, project, [change("k", "update", 2, 10)])
    headers = {"Idempotency-Key": "restore-k-1"}
    first = restore(api, token, project, "k", seqs[0], headers=headers)
    assert first.status_code == 200, first.text
    again = restore(api, token, project, "k", seqs[0], headers=headers)
    assert again.json() == first.json()
    assert last_seq(api, token, project) == first.json()["last_seq"]


def deleted_from_log(api: Api, token: str, project: str, prefix: str = "") -> list[tuple]:
    """The deleted files as the whole log says: (path, deleted_seq, last version's seq) of each
    path under ``prefix`` whose last event is a delete and that had content once."""
    last: dict[str, dict] = {}
    version: dict[str, int] = {}
    since = 0
    while True:
        page = api.get(f"/api/projects/{project}/events", token=token,
                       params={"since_seq": since, "limit": 1000}).json()
        for e in page["events"]:
            last[e["change"]["path"]] = e
            if e["change"]["hash"] is not None:
                version[e["change"]["path"]] = e["seq"]
        if not page["has_more"]:
            break
        since = page["events"][-1]["seq"]
    return sorted((p, e["seq"], version[p]) for p, e in last.items()
                  if e["change"]["op"] == "delete" and p in version and p.startswith(prefix))


def deleted_listed(api: Api, token: str, project: str, prefix: str = "") -> list[tuple]:
    """What files/deleted answers, paged three at a time."""
    found, after = [], ""
    while True:
        page = api.get(f"/api/projects/{project}/files/deleted", token=token,
                       params={"prefix": prefix or "/", "after": after, "limit": 3}).json()
        for d in page["files"]:
            assert d["last_version"]["path"] == d["path"] and d["last_version"]["hash"]
            found.append((d["path"], d["deleted_seq"], d["last_version"]["seq"]))
        if not page["has_more"]:
            return found
        after = found[-1][0]


def test_deleted_list_follows_every_kind_of_change(api: Api, token: str, project: str) -> None:
    """The deleted list is kept as the log is written: after each step it is what the whole log
    says (deletes twice over, a batch deleting and creating a path or the other way round,
    a delete of a path never written, restores of a file and of a folder)."""
    def check() -> None:
        assert deleted_listed(api, token, project) == deleted_from_log(api, token, project)
        assert deleted_listed(api, token, project, "c/") == \
            deleted_from_log(api, token, project, "c/")

    first = post(api, token, project, [change(p, "create", i, 10) for i, p in
                                       enumerate(["a", "b", "c/d", "c/e", "c/f", "g"])])
    check()
    post(api, token, project, [change("a", "delete")])
    post(api, token, project, [change("a", "delete"), change("ghost", "delete")])
    post(api, token, project, [change("h", "create", 7, 10), change("h", "delete")])
    post(api, token, project, [change("b", "delete"), change("b", "create", 8, 10)])
    post(api, token, project, [change("c/d", "update", 9, 10), change("c/d", "delete"),
                               change("c/e", "delete"), change("g", "delete")])
    check()
    assert [d[0] for d in deleted_listed(api, token, project)] == ["a", "c/d", "c/e", "g", "h"]
    post(api, token, project, [change("g", "create", 10, 10)])  # written again: not deleted
    check()
    assert restore(api, token, project, "a", first[0]).status_code == 200
    check()
    # The folder as it was after the first batch: c/d and c/e come back, c/f stays.
    post(api, token, project, [change("c/f", "delete")])
    assert restore(api, token, project, "c/", first[-1]).status_code == 200
    check()
    assert deleted_listed(api, token, project, "c/") == []
    assert [d[0] for d in deleted_listed(api, token, project)] == ["h"]


def test_deleted_list_is_exact_after_concurrent_posts(server, token: str, project: str) -> None:
    """Writers racing on the same paths (the appends serialize: SQLite's one writer thread,
    PostgreSQL's project row lock) leave the list what the log says."""
    paths = [f"race/{i}" for i in range(12)]

    def writer(n: int) -> None:
        rng = random.Random(n)
        client = Api(server.url)
        try:
            for round_ in range(12):
                batch = [change(p, "delete") if rng.random() < 0.4 else
                         change(p, "create", n * 100 + round_, 10)
                         for p in rng.sample(paths, 4)]
                # A path of its own, deleted last, so the list cannot end up empty.
                own = f"race/own{n}"
                batch.append(change(own, "delete") if round_ == 11 else
                             change(own, "create", n * 100 + round_, 10))
                r = client.post_changes(token, project, batch)
                assert r.status_code == 200, r.text
        finally:
            client.http.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(writer, range(4)))
    expected = deleted_from_log(Api(server.url), token, project)
    assert {f"race/own{n}" for n in range(4)} <= {d[0] for d in expected}
    assert deleted_listed(Api(server.url), token, project) == expected
