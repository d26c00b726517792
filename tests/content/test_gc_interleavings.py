"""The collector's races, one interleaving at a time: a request lands between the collector's
mark and its sweep. Real SQLite store and real files; ages are made by setting mtimes (and event
times) in the past, not by waiting.

These are the windows the loop in test_gc.py rarely hits (the mark of a small project takes
milliseconds): here each one is forced, so removing a touch or a check makes a test fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from vidsync.changes import Change
from vidsync.content.blobstore import BlobStore
from vidsync.content.blocks import BlockRef, Manifest
from vidsync.content.gc import Collector
from vidsync.store.base import Author
from vidsync.store.sqlite import SqliteStore

pytestmark = pytest.mark.asyncio

GRACE_S = 60.0
RETENTION_S = 3600.0
LONG_AGO = time.time() - 10 * 24 * 3600


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


class World:
    def __init__(self, tmp: Path, store: SqliteStore, project: str, author: Author) -> None:
        self.author = author
        self.blobs = BlobStore(str(tmp / "blobs"), 2**40, GRACE_S)
        self.store = store
        self.project = project
        self.collector = Collector(store, self.blobs, RETENTION_S)

    async def put_file(self, data: bytes, block: int = 1000) -> Manifest:
        parts = [data[i:i + block] for i in range(0, len(data), block)]
        refs, offset = [], 0
        for part in parts:
            await self.blobs.put_block(self.project, sha(part), _chunks(part), len(part))
            refs.append(BlockRef(sha(part), len(part), offset))
            offset += len(part)
        manifest = Manifest(sha(data), len(data), tuple(refs))
        assert self.blobs.put_manifest(self.project, manifest)
        return manifest

    def put_small(self, data: bytes) -> Manifest:
        """A file stored as a batch stores it: its one block, no manifest file."""
        assert self.blobs.put_small_files(self.project, [(sha(data), data)]) == [True]
        return Manifest(sha(data), len(data), (BlockRef(sha(data), len(data)),))

    def write_manifest_file(self, manifest: Manifest) -> None:
        """The manifest file a store wrote for every file before one-block files had none."""
        path = self.blobs.manifest_path(self.project, manifest.hash)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(orjson.dumps(manifest.to_json()))

    def age(self, manifest: Manifest) -> None:
        """Make a file's content look untouched for days."""
        for path in [self.blobs.manifest_path(self.project, manifest.hash),
                     *(self.blobs.block_path(self.project, r.hash) for r in manifest.blocks)]:
            with contextlib.suppress(FileNotFoundError):  # a one-block file has no manifest
                os.utime(path, (LONG_AGO, LONG_AGO))

    async def post(self, path: str, op: str, manifest: Manifest | None, when: datetime) -> None:
        change = Change(path, op, manifest.hash if manifest else None,
                        manifest.size if manifest else None, 1)
        await self.store.append_events(self.project, [change], when, None, "d",
                                       author=self.author)

    def intact(self, manifest: Manifest) -> bool:
        if not self.blobs.has_manifest(self.project, manifest.hash):
            return False
        try:
            return self.blobs.hash_blocks(self.project, manifest)[0] == manifest.hash
        except FileNotFoundError:
            return False


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = await SqliteStore.open(str(tmp_path / "db.sqlite"))
    user = await store.create_user("o@example.com", "o", "x")
    assert user is not None
    await store.create_project("p1", user.id, "p", "", datetime.now(UTC))
    yield World(tmp_path, store, "p1", Author(user.id, user.name))
    await store.close()


async def expired_version(world: World) -> tuple[Manifest, Manifest]:
    """An old version replaced long ago (outside the window), and the live one."""
    long_ago = datetime.now(UTC) - timedelta(seconds=2 * RETENTION_S)
    old = await world.put_file(os.urandom(3000))
    new = await world.put_file(os.urandom(2000))
    await world.post("a", "create", old, long_ago)
    await world.post("a", "update", new, long_ago)
    world.age(old)
    world.age(new)
    return old, new


async def test_a_plain_collection_removes_the_expired_version(world: World) -> None:
    old, new = await expired_version(world)
    result = await world.collector.collect_project(world.project)
    assert not world.blobs.has_manifest(world.project, old.hash)
    assert result.removed_blocks == 3 and result.removed_manifests == 1
    assert world.intact(new)
    assert result.usage.live_bytes == 2000 and result.usage.stored_bytes == 2000


async def test_a_removed_version_takes_its_poster_frame_and_hash_states(world: World) -> None:
    old, new = await expired_version(world)
    derived = {(m.hash, kind): path(world.project, m.hash) for m in (old, new)
               for kind, path in (("poster", world.blobs.poster_path),
                                  ("states", world.blobs.states_path))}
    for path in derived.values():
        world.blobs.put_cache_file(path, b"derived")
    await world.collector.collect_project(world.project)
    left = await asyncio.to_thread(lambda: {k: os.path.exists(p) for k, p in derived.items()})
    assert left == {(old.hash, "poster"): False, (old.hash, "states"): False,
                    (new.hash, "poster"): True, (new.hash, "states"): True}


async def test_restore_between_mark_and_sweep_keeps_the_content(world: World) -> None:
    old, new = await expired_version(world)
    marked = await world.collector.mark(world.project)
    assert len(marked.manifests) == 1 and len(marked.blocks) == 3
    # A restore (or a change naming old content) checks the content under the shared lock.
    assert await asyncio.to_thread(world.blobs.keep, world.project, [old.hash]) == []
    await world.post("a", "update", old, datetime.now(UTC))
    await world.collector.sweep(world.project, marked)
    assert world.intact(old) and world.intact(new)


async def test_restore_after_the_sweep_is_refused(world: World) -> None:
    old, _ = await expired_version(world)
    await world.collector.collect_project(world.project)
    assert await asyncio.to_thread(world.blobs.keep, world.project, [old.hash]) == [old.hash]


async def test_manifest_posted_between_mark_and_sweep_keeps_its_blocks(world: World) -> None:
    """Blocks stored long ago and unreferenced (a cancelled upload): a manifest naming them is
    posted after the mark. Posting touches its blocks, so the sweep leaves them."""
    data = os.urandom(4000)
    parts = [data[i:i + 1000] for i in range(0, 4000, 1000)]
    for part in parts:
        await world.blobs.put_block(world.project, sha(part), _chunks(part), len(part))
        os.utime(world.blobs.block_path(world.project, sha(part)), (LONG_AGO, LONG_AGO))
    marked = await world.collector.mark(world.project)
    assert len(marked.blocks) == 4
    hashes = [sha(p) for p in parts]
    assert await asyncio.to_thread(world.blobs.touch_blocks, world.project, hashes) == []
    refs = tuple(BlockRef(sha(p), 1000, i * 1000) for i, p in enumerate(parts))
    manifest = Manifest(sha(data), 4000, refs)
    world.blobs.put_manifest(world.project, manifest)
    await world.collector.sweep(world.project, marked)
    assert world.intact(manifest)


async def test_block_reuploaded_between_mark_and_sweep_is_kept(world: World) -> None:
    """``PUT`` of a block already stored answers 'already there' and refreshes it."""
    part = os.urandom(1000)
    await world.blobs.put_block(world.project, sha(part), _chunks(part), len(part))
    os.utime(world.blobs.block_path(world.project, sha(part)), (LONG_AGO, LONG_AGO))
    marked = await world.collector.mark(world.project)
    assert len(marked.blocks) == 1
    stored, ok = await world.blobs.put_block(world.project, sha(part), _chunks(part), len(part))
    assert (stored, ok) == (False, True)
    await world.collector.sweep(world.project, marked)
    assert world.blobs.has_block(world.project, sha(part))


async def test_fresh_uploads_are_kept_without_any_event(world: World) -> None:
    manifest = await world.put_file(os.urandom(2500))  # no change names it yet
    result = await world.collector.collect_project(world.project)
    assert world.intact(manifest) and result.removed_blocks == 0
    assert result.usage.pending_bytes == 2500


async def test_versions_inside_the_window_are_kept(world: World) -> None:
    recently = datetime.now(UTC) - timedelta(seconds=RETENTION_S / 2)
    old = await world.put_file(os.urandom(3000))
    shared = os.urandom(1000)
    new = await world.put_file(shared + os.urandom(500))  # shares nothing with old
    again = await world.put_file(shared)  # shares a block with new
    await world.post("a", "create", old, recently)
    await world.post("a", "update", new, recently)
    await world.post("b", "create", again, recently)
    await world.post("b", "delete", None, recently)
    for m in (old, new, again):
        world.age(m)
    result = await world.collector.collect_project(world.project)
    assert result.removed_blocks == 0
    assert all(world.intact(m) for m in (old, new, again))
    # Shared blocks counted once: live 1500, history old's 3000 (again's block is new's).
    assert (result.usage.live_bytes, result.usage.history_bytes) == (1500, 3000)


async def test_a_crash_mid_sweep_leaves_a_consistent_store(world: World) -> None:
    """A sweep cut off after the manifests (its blocks still there): the next run finishes."""
    old, new = await expired_version(world)
    marked = await world.collector.mark(world.project)
    marked.blocks.clear()  # as if the process died after deleting the manifests
    await world.collector.sweep(world.project, marked)
    assert not world.blobs.has_manifest(world.project, old.hash) and world.intact(new)
    result = await world.collector.collect_project(world.project)
    assert result.removed_blocks == 3 and world.intact(new)


async def test_one_block_files_are_kept_while_named_and_collected_when_not(world: World) -> None:
    """A one-block file has no manifest file: its block is kept while a live or retained
    version names the file, and collected (with its poster frame) once none does. A one-block
    file stored with a manifest file (before they had none) is collected as before."""
    long_ago = datetime.now(UTC) - timedelta(seconds=2 * RETENTION_S)
    recently = datetime.now(UTC) - timedelta(seconds=RETENTION_S / 2)
    live, kept, expired = (world.put_small(os.urandom(n)) for n in (1000, 1200, 1400))
    old_layout = world.put_small(os.urandom(1600))
    world.write_manifest_file(old_layout)
    await world.post("a", "create", expired, long_ago)
    await world.post("b", "create", old_layout, long_ago)
    await world.post("a", "update", kept, long_ago)
    await world.post("b", "delete", None, long_ago)
    await world.post("a", "update", live, recently)
    for m in (live, kept, expired, old_layout):
        world.age(m)
    poster = world.blobs.poster_path(world.project, expired.hash)
    world.blobs.put_cache_file(poster, b"\xff\xd8 a poster")

    result = await world.collector.collect_project(world.project)
    assert world.intact(live) and world.intact(kept)
    assert (result.usage.live_bytes, result.usage.history_bytes) == (1000, 1200)
    assert result.usage.stored_bytes == 2200
    assert (result.removed_blocks, result.removed_manifests) == (2, 1)
    assert not world.blobs.has_manifest(world.project, expired.hash)
    assert not world.blobs.has_manifest(world.project, old_layout.hash)
    assert not await asyncio.to_thread(os.path.exists, poster)
    assert await asyncio.to_thread(world.blobs.keep, world.project,
                                   [live.hash, expired.hash]) == [expired.hash]


async def test_restore_of_a_one_block_file_between_mark_and_sweep_keeps_it(
        world: World) -> None:
    """``keep`` of a file with no manifest file touches its block, which the sweep then leaves."""
    long_ago = datetime.now(UTC) - timedelta(seconds=2 * RETENTION_S)
    old, new = world.put_small(os.urandom(1000)), world.put_small(os.urandom(900))
    await world.post("a", "create", old, long_ago)
    await world.post("a", "update", new, long_ago)
    world.age(old)
    world.age(new)
    marked = await world.collector.mark(world.project)
    assert marked.manifests == [] and len(marked.blocks) == 1
    assert await asyncio.to_thread(world.blobs.keep, world.project, [old.hash]) == []
    await world.post("a", "update", old, datetime.now(UTC))
    await world.collector.sweep(world.project, marked)
    assert world.intact(old) and world.intact(new)
