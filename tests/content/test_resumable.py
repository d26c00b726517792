"""Resumable SHA-256: a saved state resumed gives hashlib's digest, and an edited file is hashed
from the last state before its first changed block, on the owner's side (``hash_file``) and on
the server's (``PendingUploads``), with the same manifest as a full pass."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from harness import Api

from content.helpers import manifest_of, put_block, sha, split
from vidsync.content import blocks as blocks_mod
from vidsync.content import pending as pending_mod
from vidsync.content import resumable
from vidsync.content.blocks import Manifest, hash_file, split_sequential
from vidsync.content.pending import PendingUploads
from vidsync.content.resumable import CHECKPOINT_EVERY, Checkpoints, ResumableSha256, StatesCache

MiB = 1024 * 1024

needs_states = pytest.mark.skipif(not resumable.AVAILABLE, reason="no OpenSSL SHA256_* calls")


def test_without_resumable_sha256_files_are_hashed_whole(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Where OpenSSL's SHA256_* calls cannot be loaded, nothing is saved and nothing resumed."""
    path = tmp_path / "clip.mov"
    path.write_bytes(os.urandom(20 * MiB))
    states = hash_file(path)[1] if resumable.AVAILABLE else None
    monkeypatch.setattr(resumable, "AVAILABLE", False)
    manifest, kept = hash_file(path, previous=states)
    assert manifest == split_sequential(path) and kept is None


@needs_states
@pytest.mark.parametrize("cut", [0, 64, 64 * 1000, 5 * MiB])
def test_state_resumed_matches_hashlib(cut: int) -> None:
    data = os.urandom(5 * MiB + 17)
    first = ResumableSha256()
    first.update(data[:cut])
    second = ResumableSha256(first.state())
    second.update(memoryview(data)[cut:])
    assert second.hexdigest() == hashlib.sha256(data).hexdigest()
    assert second.length == len(data)
    assert first.hexdigest() == hashlib.sha256(data[:cut]).hexdigest()  # still usable after


@needs_states
def test_state_only_at_a_64_byte_boundary() -> None:
    h = ResumableSha256()
    h.update(b"x" * 65)
    with pytest.raises(ValueError):
        h.state()


def _edit(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.fixture
def resumed_at(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte offsets ``hash_file``'s whole-file hashes were resumed from."""
    seen: list[int] = []
    real = blocks_mod.new_sha256

    def spy(state: bytes | None = None):  # noqa: ANN202 - what new_sha256 returns
        h = real(state)
        if state is not None:
            seen.append(h.length)
        return h

    monkeypatch.setattr(blocks_mod, "new_sha256", spy)
    return seen


@needs_states
def test_edit_is_hashed_from_its_first_changed_block(tmp_path: Path,
                                                     resumed_at: list[int]) -> None:
    path = tmp_path / "clip.mov"
    path.write_bytes(os.urandom(40 * MiB + 123))
    manifest, states = hash_file(path)
    assert manifest == split_sequential(path)
    assert states is not None and states.states
    for offset in (30 * MiB + 5, 2 * MiB, 40 * MiB + 100):  # middle, early, the last block
        _edit(path, offset, os.urandom(1000))
        resumed_at.clear()
        manifest, states = hash_file(path, previous=states)
        assert manifest == split_sequential(path)
        assert manifest.hash == hashlib.sha256(path.read_bytes()).hexdigest()
        expected = offset // CHECKPOINT_EVERY * CHECKPOINT_EVERY
        assert resumed_at == ([expected] if expected else [])


@needs_states
def test_states_stored_and_read_back_resume_the_same(tmp_path: Path,
                                                     resumed_at: list[int]) -> None:
    """What an agent keeps in its database (``pack_states``, beside the block hashes) resumes
    an edit as the states in memory do, and says how much the resumed hash skipped; stored
    bytes that do not fit the blocks are not used."""
    path = tmp_path / "clip.mov"
    path.write_bytes(os.urandom(40 * MiB))
    _, states = hash_file(path)
    assert states is not None and states.resumed_from == 0
    packed = states.pack_states()
    assert len(packed) == 44 * len(states.states)
    stored = Checkpoints.unpack(states.blocks, packed)
    assert stored == states
    _edit(path, 30 * MiB, os.urandom(1000))
    manifest, after = hash_file(path, previous=stored)
    assert manifest.hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert resumed_at == [24 * MiB] and after is not None and after.resumed_from == 24 * MiB
    assert Checkpoints.unpack(states.blocks, packed[:-1]) is None  # torn
    assert Checkpoints.unpack(states.blocks[:5], packed) is None  # states past its blocks
    assert Checkpoints.unpack(states.blocks, b"") is None


@needs_states
def test_unrelated_or_resized_previous_is_not_trusted(tmp_path: Path,
                                                      resumed_at: list[int]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(os.urandom(20 * MiB))
    b.write_bytes(os.urandom(20 * MiB))
    _, states_a = hash_file(a)
    assert hash_file(b, previous=states_a)[0] == split_sequential(b)
    assert resumed_at == []
    # Appended to: the shared blocks still count; truncated: likewise, up to the cut.
    with open(a, "ab") as f:
        f.write(os.urandom(3 * MiB))
    manifest, states = hash_file(a, previous=states_a)
    assert manifest == split_sequential(a) and resumed_at
    os.truncate(a, 17 * MiB + 3)
    assert hash_file(a, previous=states)[0] == split_sequential(a)


@needs_states
def test_server_resumes_a_known_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second upload of an edited file reads back only the blocks after the last state
    before its change; the digest is the same as a full pass."""
    monkeypatch.setattr(resumable, "CHECKPOINT_EVERY", 4 * 4096)
    size, n = 4096, 16
    data = [os.urandom(size) for _ in range(n)]

    def manifest_of(parts: list[bytes]) -> Manifest:
        whole = b"".join(parts)
        return Manifest.from_json({"hash": hashlib.sha256(whole).hexdigest(), "size": len(whole),
                                   "blocks": [{"hash": hashlib.sha256(p).hexdigest(),
                                               "size": len(p)} for p in parts]})

    store = {hashlib.sha256(p).hexdigest(): p for p in data}
    read_back: list[str] = []

    def read(_project: str, block_hash: str) -> bytes | None:
        read_back.append(block_hash)
        return store.get(block_hash)

    async def upload(manifest: Manifest) -> str | None:
        p = uploads.start("p", manifest, "clip.mov")
        return await uploads.digest(p, 5)

    async def main() -> None:
        first = manifest_of(data)
        assert await upload(first) == first.hash
        assert len(read_back) == n
        edited = list(data)
        edited[10] = os.urandom(size)
        store[hashlib.sha256(edited[10]).hexdigest()] = edited[10]
        second = manifest_of(edited)
        read_back.clear()
        assert await upload(second) == second.hash
        assert len(read_back) == n - 8  # resumed after block 8 (states every 4 blocks)
        # A block the server lacks ends the shared prefix early: members may fetch what it hashed.
        third_parts = list(edited)
        third_parts[15] = os.urandom(size)
        third = manifest_of(third_parts)
        p = uploads.start("p", third, "clip.mov", missing={third.blocks[5].hash})
        assert p.next_index == 4
        uploads.forget(p)
        await uploads.close()

    uploads = PendingUploads(read)
    monkeypatch.setattr(pending_mod, "POLL_S", 0.01)
    asyncio.run(main())


def test_states_cache_is_bounded() -> None:
    cache: StatesCache[str] = StatesCache(max_bytes=3 * Checkpoints(("a" * 64,) * 10,
                                                                   {5: b"s"}).nbytes())
    for i in range(5):
        cache.put(str(i), Checkpoints(("a" * 64,) * 10, {5: b"s"}))
    assert "0" not in cache and "1" not in cache and "4" in cache
    assert cache.nbytes <= cache.max_bytes
    cache.put("4", None)
    assert "4" not in cache


def _resumed_bytes(api: Api) -> float:
    """The server's count of bytes its upload hashes resumed from saved states (``/metrics``)."""
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("vidsync_upload_hash_resumed_bytes_total "):
            return float(line.split()[1])
    raise AssertionError("no vidsync_upload_hash_resumed_bytes in /metrics")


@needs_states
def test_the_server_resumes_an_edit_from_states_saved_before_a_restart(server_factory) -> None:
    """The states a server took while verifying a big file are saved beside its manifest: after
    a restart, the next version of that path is hashed from the state before its change (the
    hash must still match, or the post is refused), and states that do not fit are ignored."""
    server = server_factory()
    api = Api(server.url)
    owner, _ = api.register("owner")
    project = api.project(owner)
    block = 128 * 1024
    version = os.urandom(40 * MiB)

    def upload(data: bytes) -> None:
        body = {**manifest_of(data, block), "path": "clip.mov"}
        first = api.post(f"/api/projects/{project}/manifests", token=owner, json=body)
        if first.status_code == 409:
            blocks = {sha(b): b for b in split(data, block)}
            for missing in first.json()["error"]["missing"]:
                assert put_block(api, owner, project, blocks[missing]).status_code == 201
        assert api.post(f"/api/projects/{project}/manifests", token=owner,
                        json=body).status_code == 201
        assert api.post_changes(owner, project, [{"path": "clip.mov", "op": "update",
                                                  "hash": sha(data), "size": len(data)}]
                                ).status_code == 200

    def edit(data: bytes, offset: int) -> bytes:
        return data[:offset] + os.urandom(1000) + data[offset + 1000:]

    upload(version)
    server.kill()
    server.start()
    assert _resumed_bytes(api) == 0
    version = edit(version, 30 * MiB + 5)  # states are taken every 8 MiB: resumed at 24 MiB
    upload(version)
    assert _resumed_bytes(api) == 24 * MiB
    assert api.get(f"/api/projects/{project}/content/{sha(version)}", token=owner
                   ).content == version

    # Saved states that were not taken over the stored manifest's blocks are not used.
    states = server.data_dir / "blobs" / project / "states" / f"{sha(version)}.bin"
    assert states.is_file()
    states.write_bytes(os.urandom(32) + states.read_bytes()[32:])
    server.kill()
    server.start()
    version = edit(version, 20 * MiB)
    upload(version)
    assert _resumed_bytes(api) == 0
    assert api.get(f"/api/projects/{project}/content/{sha(version)}", token=owner
                   ).content == version
    api.http.close()
