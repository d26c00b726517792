"""Bad input to the event log: each is a 4xx ``{error: {code, message}}`` and writes nothing."""

from __future__ import annotations

import pytest
from harness import Api, change

from server.helpers import all_events, assert_error

GOOD_HASH = change("x")["hash"]


def bad(**fields) -> dict:
    """A create change with some fields replaced (or removed, with the value ``...``)."""
    c = {"path": "clips/bad.mov", "op": "create", "hash": GOOD_HASH, "size": 1, "mtime": 1}
    c.update(fields)
    return {k: v for k, v in c.items() if v is not ...}


def long_path(nbytes: int) -> str:
    """A path of exactly ``nbytes`` bytes, in segments of at most 255."""
    segments, left = [], nbytes
    while left > 0:
        n = min(200, left)
        if left - n == 1:  # never leave a one-byte remainder for "/": nothing would fit after it
            n -= 2
        segments.append("s" * n)
        left -= n + 1
    path = "/".join(segments)
    assert len(path.encode()) == nbytes
    return path


BAD_CHANGES = {
    "unknown op": bad(op="rename"),
    "missing op": bad(op=...),
    "op not a string": bad(op=1),
    "unknown field": bad(owner="me"),
    "not an object": "clips/a.mov",
    "absolute path": bad(path="/etc/passwd"),
    "dotdot first": bad(path="../outside.mov"),
    "dotdot inside": bad(path="clips/../../outside.mov"),
    "dotdot last": bad(path="clips/.."),
    "dot segment": bad(path="clips/./a.mov"),
    "backslash": bad(path="clips\\a.mov"),
    "backslash dotdot": bad(path="..\\outside.mov"),
    "NUL byte": bad(path="clips/a\x00.mov"),
    "control char": bad(path="clips/a\n.mov"),
    "drive letter": bad(path="C:/Windows/a.mov"),
    "empty path": bad(path=""),
    "empty segment": bad(path="clips//a.mov"),
    "trailing slash": bad(path="clips/"),
    "path not a string": bad(path=["clips", "a.mov"]),
    "missing path": bad(path=...),
    "path over 4096 bytes": bad(path=long_path(4097)),
    "segment over 255 bytes": bad(path="clips/" + "s" * 256),
    # 32 segments of 42 x U+0958 are 4064 bytes as sent, but 8096 once NFC decomposes each
    # character (it is a composition exclusion): the limit is on the path as stored.
    "over 4096 bytes once NFC": bad(path="/".join(["\u0958" * 42] * 32)),
    "reserved agent folder": bad(path=".vidsync/state.db"),
    "hash uppercase": bad(hash=GOOD_HASH.upper()),
    "hash short": bad(hash=GOOD_HASH[:63]),
    "hash not hex": bad(hash="g" * 64),
    "hash missing": bad(hash=...),
    "hash null on create": bad(hash=None),
    "hash a number": bad(hash=12),
    "delete hash not hex": {"path": "clips/a.mov", "op": "delete", "hash": "zz"},
    "negative size": bad(size=-1),
    "size a string": bad(size="1"),
    "size a float": bad(size=1.5),
    "size a bool": bad(size=True),
    "size over 2**53": bad(size=2**53 + 1),
    "size missing": bad(size=...),
    "negative mtime": bad(mtime=-5),
    "mtime a string": bad(mtime="yesterday"),
}


@pytest.fixture
def baseline(api: Api, owner, project) -> tuple[str, str, list[dict]]:
    """A project with a few events, to check that bad requests leave it as it was."""
    token, _ = owner
    r = api.post_changes(token, project, [change("clips/a.mov"), change("audio/b.wav", n=1)])
    assert r.status_code == 200, r.text
    return token, project, all_events(api, token, project)


def assert_unchanged(api: Api, baseline) -> None:
    token, project, events = baseline
    assert all_events(api, token, project) == events
    files = api.get(f"/api/projects/{project}/files", token=token).json()
    assert [f["path"] for f in files["files"]] == ["audio/b.wav", "clips/a.mov"]
    assert files["seq"] == events[-1]["seq"]


@pytest.mark.parametrize("case", BAD_CHANGES)
def test_one_bad_change_rejects_the_batch(api: Api, baseline, case: str) -> None:
    token, project, _ = baseline
    changes = [change("clips/new1.mov"), BAD_CHANGES[case], change("clips/new2.mov")]
    r = api.post(f"/api/projects/{project}/files/update", json={"changes": changes}, token=token)
    err = assert_error(r, 400, "invalid_change")
    assert err["index"] == 1 and "changes[1]" in err["message"]
    assert_unchanged(api, baseline)


@pytest.mark.parametrize(("body", "code"), [
    ({}, "invalid_body"),
    ({"changes": []}, "invalid_body"),
    ({"changes": {"path": "a"}}, "invalid_body"),
    ({"changes": None}, "invalid_body"),
    ([change("a.mov")], "invalid_body"),
    ("changes", "invalid_body"),
    ({"changes": [change(f"c/{i}.mov") for i in range(1001)]}, "invalid_body"),
], ids=["no changes", "empty batch", "object", "null", "array body", "string body", "1001 changes"])
def test_bad_batches(api: Api, baseline, body, code: str) -> None:
    token, project, _ = baseline
    assert_error(api.post(f"/api/projects/{project}/files/update", json=body, token=token), 400, code)
    assert_unchanged(api, baseline)


@pytest.mark.parametrize(("raw", "content_type", "status", "code"), [
    (b'{"changes": [', "application/json", 400, "invalid_json"),
    (b"", "application/json", 400, "invalid_json"),
    (b'{"changes": [{"path": "\\ud800.mov"}]}', "application/json", 400, None),
    (b"\xff\xfe{}", "application/json", 400, "invalid_json"),
    (b'{"changes": [' + b" " * (4 * 1024 * 1024) + b"]}", "application/json", 413,
     "payload_too_large"),
    (b'{"changes": []}', "text/plain", 415, "unsupported_media_type"),
], ids=["truncated", "empty", "lone surrogate", "not utf-8", "over 4 MiB", "not json"])
def test_bad_bodies(api: Api, baseline, raw: bytes, content_type: str, status: int, code) -> None:
    token, project, _ = baseline
    r = api.post(f"/api/projects/{project}/files/update", content=raw, token=token,
                 headers={"Content-Type": content_type})
    assert_error(r, status, code)
    assert_unchanged(api, baseline)


def test_limits_are_inclusive(api: Api, owner, project) -> None:
    """What is just inside each limit is accepted: 1000 changes, a 4096-byte path, 255-byte names."""
    token, _ = owner
    r = api.post_changes(token, project, [change(f"many/{i}.mov") for i in range(1000)])
    assert r.status_code == 200, r.text
    assert [x["seq"] for x in r.json()["results"]] == list(range(1, 1001))
    edge = [change(long_path(4096)), change("n/" + "é" * 127 + "a")]
    r = api.post_changes(token, project, edge)
    assert r.status_code == 200, r.text
    assert [x["path"] for x in r.json()["results"]] == [c["path"] for c in edge]


@pytest.mark.parametrize("key", ["", "k" * 201, "tab\tkey", "clé".encode()],
                         ids=["empty", "201 chars", "control char", "not ASCII"])
def test_bad_idempotency_key(api: Api, baseline, key: str | bytes) -> None:
    token, project, _ = baseline
    r = api.post(f"/api/projects/{project}/files/update", json={"changes": [change("k.mov")]},
                 token=token, headers={"Idempotency-Key": key})
    assert_error(r, 400, "invalid_idempotency_key")
    assert_unchanged(api, baseline)


BAD_PATHS_QUERIES = [{"paths": "../x"}, {"paths": "/abs"}, {"paths": "a\\b"},
                     {"paths": ",".join(f"p{i}" for i in range(101))}]
BAD_QUERIES = [("events", q) for q in [
    {"since_seq": "-1"}, {"since_seq": "abc"}, {"since_seq": "1.5"}, {"since_seq": ""},
    {"since_seq": "+1"}, {"since_seq": " 1"}, {"since_seq": "1_0"}, {"limit": "0"},
    {"limit": "1001"}, {"wait": "61"}, {"wait": "-1"}, *BAD_PATHS_QUERIES]] + [
    ("files", q) for q in BAD_PATHS_QUERIES]


@pytest.mark.parametrize(("endpoint", "query"), BAD_QUERIES,
                         ids=[f"{e}?" + "&".join(f"{k}={v[:12]}" for k, v in q.items())
                              for e, q in BAD_QUERIES])
def test_bad_queries(api: Api, baseline, endpoint: str, query: dict) -> None:
    token, project, _ = baseline
    err = assert_error(api.get(f"/api/projects/{project}/{endpoint}", params=query, token=token), 400)
    assert err["code"] in ("invalid_query", "invalid_paths")
