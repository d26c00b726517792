"""Retention and garbage collection, on two real nodes sharing one blob directory and one database
(SQLite file or PostgreSQL), with a retention of seconds so the window passes during the test.

The race test runs both nodes' periodic collectors every 0.2 s, plus ``vidsync gc`` processes in
a loop, while two writers upload, post, delete and restore; then it checks that every live file
and every version still inside the window downloads byte-identical, and that once the window
passes the blocks on disk are exactly the live files' blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from harness import VIDSYNC, Api, ServerProcess, scratch_database, wait_until

from content.helpers import sha
from vidsync.content.blocks import block_size_for
from vidsync.server.gc import USAGE_FIELDS
from vidsync.store import Usage, open_store

# Long enough for a loaded CI machine to go from an upload to its change (the grace), short
# enough for the window to pass during the test.
RETENTION_S = 6.0
GRACE_S = 3.0


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Two nodes sharing a blob directory and a database, collecting every 0.2 s. The database is
    the run's backend, as for every server test: a shared SQLite file, or a scratch PostgreSQL
    database in the PostgreSQL pass (``VIDSYNC_TEST_DATABASE``)."""
    database = scratch_database() or str(tmp_path_factory.mktemp("shared-db") / "vidsync.db")
    blobs = tmp_path_factory.mktemp("shared-blobs")
    storage = ["--blob-dir", str(blobs), "--retention", f"{RETENTION_S}s",
               "--gc-grace", f"{GRACE_S}s"]
    nodes = [ServerProcess(tmp_path_factory.mktemp("node"),
                           ["--login-attempts", "1000", "--gc-interval", "0.2s", *storage],
                           database) for _ in range(2)]
    for node in nodes:
        node.start()
    yield {"nodes": nodes, "blobs": blobs, "database": database, "storage": storage,
           "data_dir": nodes[0].data_dir}
    for node in nodes:
        node.kill()


def upload(api: Api, token: str, project: str, data: bytes,
           pause: Callable[[], None] = lambda: None) -> str:
    """Store ``data`` as an agent does (check, send what is missing, manifest), sending again
    what a collection removed meanwhile."""
    size = block_size_for(len(data))
    blocks = [data[i:i + size] for i in range(0, len(data), size)] or []
    base = f"/api/projects/{project}"
    manifest = {"hash": sha(data), "size": len(data),
                "blocks": [{"hash": sha(b), "size": len(b)} for b in blocks]}
    by_hash = {sha(b): b for b in blocks}
    r = api.post(f"{base}/blocks/check", token=token, json={"hashes": list(by_hash)})
    assert r.status_code == 200, r.text
    missing = r.json()["missing"]
    for _ in range(20):
        for h in missing:
            r = api.request("PUT", f"{base}/blocks/{h}", token=token, content=by_hash[h],
                            headers={"Content-Type": "application/octet-stream"})
            assert r.status_code in (200, 201), r.text
        pause()  # a block waiting for its manifest: the collector must not take it
        r = api.post(f"{base}/manifests", token=token, json=manifest)
        if r.status_code in (200, 201):
            return manifest["hash"]
        assert r.status_code == 409 and r.json()["error"]["code"] == "missing_blocks", r.text
        missing = r.json()["error"]["missing"]
    raise AssertionError("manifest never accepted")


def block_files(blobs: Path) -> dict[str, int]:
    """Blocks on disk and their sizes; one a collector removes while they are listed is left
    out (not an error: the nodes collect as this runs)."""
    found = {}
    for p in blobs.glob("*/blocks/*/*"):
        with contextlib.suppress(FileNotFoundError):
            found[p.name] = p.stat().st_size
    return found


def blocks_of(data: bytes) -> set[str]:
    size = block_size_for(len(data))
    return {sha(data[i:i + size]) for i in range(0, len(data), size)}


def run_gc_cli(cluster: dict, *extra: str) -> subprocess.CompletedProcess:
    cmd = [*VIDSYNC, "gc", "--data-dir", str(cluster["data_dir"]), "--database",
           cluster["database"], *cluster["storage"], *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_versions_expire_and_storage_drops_to_live_data(cluster: dict) -> None:
    one, two = (Api(n.url) for n in cluster["nodes"])
    token, _ = one.register("owner")
    project = one.project(token)
    base = f"/api/projects/{project}"
    keep = os.urandom(700_000)
    versions = [os.urandom(500_000), os.urandom(300_000), os.urandom(400_000)]
    changes = []
    for i, data in enumerate([*versions, keep]):  # each posted as soon as stored, as agents do
        api = (one, two)[i % 2]
        upload(api, token, project, data)
        path = "keep.bin" if data is keep else "cut.mov"
        changes.append({"path": path, "op": "update" if i and path == "cut.mov" else "create",
                        "hash": sha(data), "size": len(data), "mtime": 1_700_000_000_000 + i})
        r = api.post(f"{base}/files/update", token=token, json={"changes": [changes[-1]]})
        assert r.status_code == 200, r.text
    changes.append({"path": "cut.mov", "op": "delete", "hash": None, "size": None,
                    "mtime": None})
    r = one.post(f"{base}/files/update", token=token, json={"changes": [changes[-1]]})
    assert r.status_code == 200, r.text
    seqs = [r["seq"] for r in two.get(f"{base}/files/history", token=token,
                                      params={"path": "cut.mov"}).json()["versions"][1:]]
    # Inside the window: each version restores byte-identical, through either node.
    for seq, data in zip(reversed(seqs), versions, strict=True):
        r = two.post(f"{base}/files/restore", token=token, json={"path": "cut.mov", "seq": seq})
        assert r.status_code == 200, r.text
        assert one.get(f"{base}/content/{sha(data)}", token=token).content == data
    r = one.post(f"{base}/files/update", token=token, json={"changes": [changes[-1]]})
    assert r.status_code == 200
    everything = sum(block_files(cluster["blobs"]).values())
    assert everything >= len(keep) + sum(map(len, versions))

    # The window passes; the nodes' collectors run: only the live file's blocks stay.
    wait_until(lambda: set(block_files(cluster["blobs"])) == blocks_of(keep),
               RETENTION_S + 20, "the collection of expired versions")
    assert sum(block_files(cluster["blobs"]).values()) == len(keep)
    assert not list(cluster["blobs"].glob(f"{project}/manifests/{sha(versions[0])}*"))
    for api in (one, two):
        assert api.get(f"{base}/content/{sha(keep)}", token=token).content == keep
    history = one.get(f"{base}/files/history", token=token, params={"path": "cut.mov"}).json()
    assert not any(v["available"] for v in history["versions"])
    last = one.get(base, token=token).json()["project"]["last_seq"]
    r = two.post(f"{base}/files/restore", token=token, json={"path": "cut.mov", "seq": seqs[0]})
    assert r.status_code == 410 and r.json()["error"]["code"] == "expired", r.text
    assert r.json()["error"]["paths"] == ["cut.mov"]
    assert one.get(base, token=token).json()["project"]["last_seq"] == last  # nothing appended
    usage = wait_until(lambda: (u := one.get(base, token=token).json()["usage"])["history_bytes"]
                       == 0 and u["stored_bytes"] == len(keep) and u, 70, "usage to settle")
    assert usage["live_bytes"] == len(keep) and usage["reclaimable_bytes"] == 0
    metrics = one.get("/metrics").text
    assert f'vidsync_storage_live_bytes{{project="{project}"}} {float(len(keep))}' in metrics
    report = run_gc_cli(cluster, "--dry-run", "--json")
    assert report.returncode == 0, report.stderr
    assert f'"live_bytes": {len(keep)}' in report.stdout


def test_collector_races_uploads_posts_and_restores(cluster: dict) -> None:
    nodes = cluster["nodes"]
    apis = [Api(n.url) for n in nodes]
    token, _ = apis[0].register("owner")
    project = apis[0].project(token)
    base = f"/api/projects/{project}"
    contents: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    stats = {"posted": 0, "restored": 0, "expired": 0, "content_missing": 0, "cli_runs": 0}

    def writer(api: Api, seed: int) -> None:
        rnd = random.Random(seed)
        api = Api(api.base_url)  # its own connection
        try:
            while not stop.is_set():
                path = f"f{rnd.randrange(4)}"
                action = rnd.random()
                if action < 0.15:
                    r = api.post(f"{base}/files/update", token=token, json={"changes": [
                        {"path": path, "op": "delete", "hash": None, "size": None,
                         "mtime": None}]})
                    assert r.status_code == 200, r.text
                    continue
                if action < 0.4:
                    versions = api.get(f"{base}/files/history", token=token,
                                       params={"path": path}).json()["versions"]
                    old = [v for v in versions if v["op"] != "delete"]
                    if not old:
                        continue
                    v = rnd.choice(old)
                    r = api.post(f"{base}/files/restore", token=token,
                                 json={"path": path, "seq": v["seq"]})
                    if r.status_code == 410:
                        stats["expired"] += 1
                        continue
                    assert r.status_code == 200, r.text
                    stats["restored"] += 1
                    got = api.get(f"{base}/content/{v['hash']}", token=token)
                    assert got.status_code == 200 and got.content == contents[v["hash"]], got.text
                    continue
                # A new version: sometimes an old content again (its blocks may be expiring),
                # sometimes an edit sharing blocks with an earlier one.
                with lock:
                    known = list(contents.values())
                if known and action < 0.55:
                    data = rnd.choice(known)
                elif known and action < 0.75:
                    data = rnd.choice(known)[:200_000] + rnd.randbytes(rnd.randrange(1, 300_000))
                else:
                    data = rnd.randbytes(rnd.randrange(0, 600_000))
                with lock:
                    contents[sha(data)] = data
                digest = upload(api, token, project, data,
                                pause=lambda: time.sleep(rnd.random() * 0.3))
                time.sleep(rnd.random() * 0.3)  # the manifest waits for its change
                r = api.post(f"{base}/files/update", token=token, json={"changes": [
                    {"path": path, "op": "update", "hash": digest, "size": len(data),
                     "mtime": rnd.randrange(1, 2**40)}]})
                if r.status_code == 409:  # over the grace on a stalled machine: sent again
                    stats["content_missing"] += 1
                    continue
                assert r.status_code == 200, r.text
                stats["posted"] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
            stop.set()

    def gc_loop() -> None:
        while not stop.is_set():
            done = run_gc_cli(cluster, "--json")
            if done.returncode != 0:
                errors.append(AssertionError(done.stderr))
                stop.set()
            stats["cli_runs"] += 1

    threads = [threading.Thread(target=writer, args=(apis[i % 2], i)) for i in range(2)]
    threads.append(threading.Thread(target=gc_loop))
    for t in threads:
        t.start()
    time.sleep(15)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert stats["posted"] > 10 and stats["restored"] > 3 and stats["cli_runs"] >= 1, stats
    for api in apis:  # and each node's own collector ran meanwhile
        runs = re.search(r"^vidsync_gc_runs_total (\S+)$", api.get("/metrics").text, re.M)
        assert runs and float(runs.group(1)) >= 1

    def check_everything_kept() -> None:
        files = apis[0].get(f"{base}/files", token=token).json()["files"]
        for api in apis:
            for f in files:
                got = api.get(f"{base}/content/{f['hash']}", token=token)
                assert got.status_code == 200, (f, got.text)
                assert got.content == contents[f["hash"]]
        # Every version replaced well inside the window is still there, byte-identical.
        versions = apis[1].get(f"{base}/files/history", token=token,
                               params={"path": "/", "limit": 1000}).json()["versions"]
        replaced_at: dict[str, float] = {}
        for v in versions:  # newest first: the event after a version is seen before it
            ts = _epoch(v["created_at"])
            if v["hash"] and v["path"] in replaced_at \
                    and time.time() - replaced_at[v["path"]] < RETENTION_S - 1.5:
                assert v["available"], v
                got = apis[0].get(f"{base}/content/{v['hash']}", token=token)
                assert got.status_code == 200 and got.content == contents[v["hash"]], v
            replaced_at[v["path"]] = ts

    check_everything_kept()
    # Once the window passes, what is stored is exactly the live files' blocks.
    files = apis[0].get(f"{base}/files", token=token).json()["files"]
    live_blocks = set().union(*(blocks_of(contents[f["hash"]]) for f in files)) if files else set()
    wait_until(lambda: set(block_files(cluster["blobs"])) == live_blocks,
               RETENTION_S + 30, "storage to drop to the live files")
    check_everything_kept()
    print(stats)


def _epoch(iso_time: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


def test_gc_skips_while_another_collection_runs(cluster: dict) -> None:
    """The blob directory's collection lock: a second collector skips its turn."""
    import fcntl

    with open(cluster["blobs"] / ".gc.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        done = run_gc_cli(cluster, "--json")
        assert done.returncode == 0, done.stderr
        assert '"skipped": true' in done.stdout
    # Free again: a run gets its turn (the nodes' own collectors may take some turns first).
    wait_until(lambda: '"skipped": false' in run_gc_cli(cluster, "--json").stdout, 30,
               "a collection that was not skipped")


def test_leftovers_are_removed(cluster: dict) -> None:
    """Temp files of uploads a crash cut off (older than a day), and a half-deleted project."""
    api = Api(cluster["nodes"][0].url)
    token, _ = api.register("owner")
    project = api.project(token)
    data = os.urandom(1000)
    upload(api, token, project, data)
    tmp = cluster["blobs"] / project / "tmp"
    old, new = tmp / "old-partial", tmp / "new-partial"
    old.write_bytes(b"x" * 100)
    new.write_bytes(b"y" * 100)
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    leftover = cluster["blobs"] / ".deleted-abc-1234"
    (leftover / "blocks").mkdir(parents=True)
    wait_until(lambda: not old.exists() and not leftover.exists(), 20, "leftovers removed")
    assert new.exists()
    assert hashlib.sha256(api.get(f"/api/projects/{project}/content/{sha(data)}",
                                  token=token).content).hexdigest() == sha(data)


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One node that collects only when asked (``vidsync gc``), with a grace and a retention
    long enough that nothing it measures changes class while the test runs; on the run's
    backend, as ``cluster``."""
    database = scratch_database() or str(tmp_path_factory.mktemp("db") / "vidsync.db")
    blobs = tmp_path_factory.mktemp("blobs")
    storage = ["--blob-dir", str(blobs), "--retention", "1h", "--gc-grace", "1h"]
    server = ServerProcess(tmp_path_factory.mktemp("node"),
                           ["--login-attempts", "1000", "--gc-interval", "0", *storage], database)
    server.start()
    yield {"nodes": [server], "blobs": blobs, "database": database, "storage": storage,
           "data_dir": server.data_dir}
    server.kill()


def test_usage_is_the_last_measurement_kept_across_restarts(node: dict) -> None:
    """A page open answers the last measurement kept in the store: after a restart it is not
    measured again (what was uploaded meanwhile is not in it), and a collection's measurement
    (``vidsync gc`` in its own process) is what the server answers next, field for field."""
    server = node["nodes"][0]
    api = Api(server.url)
    token, _ = api.register("owner")
    project = api.project(token)
    base = f"/api/projects/{project}"
    first, second = os.urandom(600_000), os.urandom(300_000)
    upload(api, token, project, first)
    r = api.post(f"{base}/files/update", token=token, json={"changes": [
        {"path": "a.bin", "op": "create", "hash": sha(first), "size": len(first), "mtime": 1}]})
    assert r.status_code == 200, r.text
    measured = api.get(base, token=token).json()["usage"]
    assert (measured["live_bytes"], measured["pending_bytes"], measured["stored_bytes"]) == (
        len(first), 0, len(first))
    upload(api, token, project, second)  # stored, named by no event yet: pending
    server.stop()
    server.start()
    api = Api(server.url)
    assert api.get(base, token=token).json()["usage"] == measured

    # A deletion, then a collection in another process: its measurement is what is answered.
    r = api.post(f"{base}/files/update", token=token, json={"changes": [
        {"path": "a.bin", "op": "delete", "hash": None, "size": None, "mtime": None}]})
    assert r.status_code == 200, r.text
    report = run_gc_cli(node, "--json")
    assert report.returncode == 0, report.stderr
    collected = next(p for p in orjson.loads(report.stdout)["projects"]
                     if p["project_id"] == project)
    assert (collected["live_bytes"], collected["history_bytes"], collected["pending_bytes"],
            collected["stored_bytes"]) == (0, len(first), len(second), len(first) + len(second))
    server.stop()
    server.start()
    api = Api(server.url)
    usage = api.get(base, token=token).json()["usage"]
    assert usage == {**{k: collected[k] for k in USAGE_FIELDS}, "retention_s": 3600,
                     "quota_bytes": measured["quota_bytes"]}


def test_an_older_measurement_never_replaces_a_newer_one(node: dict) -> None:
    """A measurement that ends after a newer one was kept (the server's, beside a collection)
    is dropped; a deleted project keeps none."""
    api = Api(node["nodes"][0].url)
    token, _ = api.register("owner")
    project = api.project(token)

    async def run() -> None:
        store = await open_store(node["database"])
        try:
            newer = Usage(1, 2, 3, 4, 10, counted_at=2_000_000_000.0)
            await store.save_usage(project, newer)
            await store.save_usage(project, Usage(9, 9, 9, 9, 45, counted_at=1_000_000_000.0))
            assert await store.usage(project) == newer
            assert api.delete(f"/api/projects/{project}", token=token).status_code == 204
            assert await store.usage(project) is None
            await store.save_usage(project, newer)
            assert await store.usage(project) is None
        finally:
            await store.close()

    asyncio.run(run())
