"""Conflict detection: a change's ``base`` is compared with the path's current state in the
transaction that appends, so a refused batch appends nothing and two writers racing from the same
version cannot both win."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from harness import Api
from harness import change as any_change

from server.helpers import assert_error
from vidsync.store.sqlite import LATEST_ON_PATH, SqliteStore


def change(path: str, op: str = "create", n: int = 0) -> dict:
    """A change whose content differs with ``n`` (a 1-byte one would not)."""
    return any_change(path, op, n, size=64)


def based(path: str, base: str | None, op: str = "create", n: int = 0) -> dict:
    return {**change(path, op, n), "base": base}


def last_seq(api: Api, token: str, project: str) -> int:
    return api.get(f"/api/projects/{project}/events", token=token).json()["last_seq"]


def test_base_null_means_the_path_must_not_exist(api: Api, owner, project) -> None:
    token, owner_user = owner
    editor, _ = api.editor(token, project)
    r = api.post_changes(token, project, [based("cut.prproj", None, n=1)])
    assert r.status_code == 200, r.text
    first = change("cut.prproj", n=1)["hash"]

    r = api.post_changes(editor, project, [based("cut.prproj", None, n=2)])
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"]["code"] == "conflict" and body["error"]["message"]
    assert body["conflicts"] == [{"index": 0, "path": "cut.prproj", "current": {
        "hash": first, "seq": 1, "author": {"id": owner_user["id"], "name": owner_user["name"]}}}]
    assert last_seq(api, token, project) == 1


def test_update_and_delete_from_the_current_version(api: Api, owner, project) -> None:
    token, owner_user = owner
    editor, editor_user = api.editor(token, project)
    v1, v2, v3 = (change("a.mov", n=n)["hash"] for n in (1, 2, 3))
    assert api.post_changes(token, project, [change("a.mov", n=1)]).status_code == 200
    assert api.post_changes(editor, project, [based("a.mov", v1, "update", 2)]).status_code == 200
    # The owner still thinks a.mov is v1: refused, with who wrote v2.
    r = api.post_changes(token, project, [based("a.mov", v1, "update", 3)])
    assert r.status_code == 409
    assert r.json()["conflicts"][0]["current"] == {
        "hash": v2, "seq": 2, "author": {"id": editor_user["id"], "name": editor_user["name"]}}
    r = api.post_changes(token, project, [based("a.mov", v1, "delete")])
    assert r.status_code == 409 and r.json()["conflicts"][0]["current"]["hash"] == v2
    assert api.post_changes(token, project, [based("a.mov", v2, "delete")]).status_code == 200

    # Deleted: the current state is "no content", with the delete's seq and author.
    r = api.post_changes(editor, project, [based("a.mov", v2, "update", 3)])
    assert r.status_code == 409
    assert r.json()["conflicts"][0]["current"] == {
        "hash": None, "seq": 3, "author": {"id": owner_user["id"], "name": owner_user["name"]}}
    # Never written: hash, seq and author are all null.
    r = api.post_changes(editor, project, [based("never.mov", v3, "update", 3)])
    assert r.status_code == 409
    assert r.json()["conflicts"] == [{"index": 0, "path": "never.mov",
                                      "current": {"hash": None, "seq": None, "author": None}}]
    # The file came back from a delete: base null is right.
    assert api.post_changes(editor, project, [based("a.mov", None, n=3)]).status_code == 200
    assert last_seq(api, token, project) == 4


def test_every_conflict_is_listed_and_nothing_is_appended(api: Api, owner, project) -> None:
    token, _ = owner
    v1 = change("x/1.mov", n=1)["hash"]
    assert api.post_changes(token, project, [change("x/1.mov", n=1), change("x/2.mov", n=1)]
                            ).status_code == 200
    r = api.post_changes(token, project, [
        based("x/1.mov", v1, "update", 2),        # fine
        based("x/2.mov", None, n=2),              # exists
        change("x/3.mov", n=2),                   # unconditional
        based("x/4.mov", v1, "update", 2),        # does not exist
    ])
    assert r.status_code == 409
    assert [(c["index"], c["path"]) for c in r.json()["conflicts"]] == [(1, "x/2.mov"),
                                                                         (3, "x/4.mov")]
    assert last_seq(api, token, project) == 2
    files = api.get(f"/api/projects/{project}/files", token=token).json()["files"]
    assert [f["path"] for f in files] == ["x/1.mov", "x/2.mov"] and files[0]["hash"] == v1


def test_a_batch_is_checked_in_order(api: Api, owner, project) -> None:
    """A rename is a delete plus a create; a batch may also move one path on twice."""
    token, _ = owner
    v1, v2 = change("a.mov", n=1)["hash"], change("a.mov", n=2)["hash"]
    assert api.post_changes(token, project, [change("a.mov", n=1)]).status_code == 200
    r = api.post_changes(token, project, [based("a.mov", v1, "delete"), based("b.mov", None, n=1),
                                          based("a.mov", None, n=2), based("a.mov", v2, "update", 3)])
    assert r.status_code == 200, r.text
    r = api.post_changes(token, project, [based("c.mov", None, n=1), based("c.mov", None, n=2)])
    assert r.status_code == 409 and [c["index"] for c in r.json()["conflicts"]] == [1]


def test_a_change_that_already_holds_is_not_a_conflict(api: Api, owner, project) -> None:
    """Two writers who made the same file, or both deleted it, lose nothing."""
    token, _ = owner
    editor, _ = api.editor(token, project)
    v1 = change("same.mov", n=1)["hash"]
    assert api.post_changes(token, project, [based("same.mov", None, n=1)]).status_code == 200
    assert api.post_changes(editor, project, [based("same.mov", None, n=1)]).status_code == 200
    assert api.post_changes(token, project, [based("same.mov", v1, "delete")]).status_code == 200
    assert api.post_changes(editor, project, [based("same.mov", v1, "delete")]).status_code == 200


def test_base_of_the_wrong_shape_is_refused(api: Api, owner, project) -> None:
    token, _ = owner
    good = change("a.mov")
    for bad in (1, True, "", "abc", good["hash"].upper(), good["hash"] + "0", ["x"], {"h": 1}):
        err = assert_error(api.post_changes(token, project, [change("ok.mov"), {**good, "base": bad}]),
                           400, "invalid_change")
        assert err["index"] == 1 and "base" in err["message"]
    assert last_seq(api, token, project) == 0


def test_idempotent_retry_is_answered_from_the_first_time(api: Api, owner, project) -> None:
    token, _ = owner
    first = api.post_changes(token, project, [based("a.mov", None, n=1)], key="k1")
    assert first.status_code == 200
    again = api.post_changes(token, project, [based("a.mov", None, n=1)], key="k1")
    assert again.status_code == 200 and again.json() == first.json()
    # The same key with another base is another request.
    assert_error(api.post_changes(token, project, [based("a.mov", "0" * 64, n=1)], key="k1"),
                 422, "idempotency_key_reused")
    assert last_seq(api, token, project) == 1


def test_racing_writers_from_one_version_exactly_one_wins(api: Api, owner, project) -> None:
    token, _ = owner
    writers = [token] + [api.editor(token, project)[0] for _ in range(5)]
    v0 = change("race.prproj", n=0)["hash"]
    assert api.post_changes(token, project, [change("race.prproj", n=0)]).status_code == 200
    for n, w in enumerate(writers, start=1):  # content first, so the posts race only each other
        api.upload(w, project, _content(n))
    results: list[int] = [0] * len(writers)
    go = threading.Barrier(len(writers))

    def post(i: int) -> None:
        client = Api(api.base_url)
        go.wait()
        r = client.post(f"/api/projects/{project}/files/update", token=writers[i], json={
            "changes": [{**change("race.prproj", "update", i + 1), "base": v0}]})
        results[i] = r.status_code
        client.http.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [409] * (len(writers) - 1), results
    assert last_seq(api, token, project) == 2


def _content(n: int) -> bytes:
    from harness import CONTENTS

    return CONTENTS[change("race.prproj", "update", n)["hash"]]


def test_the_base_check_seeks_each_path_instead_of_scanning_the_log(tmp_path) -> None:
    """A change's base is checked against its path's latest event with one seek on
    events_by_path: a scan of the project's log per new path made each files/update cost
    O(events) (an image sequence of 20,000 frames: seconds per batch by the end)."""
    store = asyncio.run(SqliteStore.open(str(tmp_path / "vidsync.db")))
    try:
        conn = sqlite3.connect(tmp_path / "vidsync.db")
        plan = conn.execute("EXPLAIN QUERY PLAN " + LATEST_ON_PATH, ("p", "a.exr")).fetchall()
        conn.close()
    finally:
        asyncio.run(store.close())
    assert ["USING INDEX events_by_path (project_id=? AND path=?)" in row[-1] for row in plan] \
        == [True], plan
