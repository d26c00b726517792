"""Uploads send only what the server lacks (also after a client killed half-way); downloads
reuse what is already local and check every block."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
from harness import ROOT, ServerProcess

from vidsync.client import ApiError, Client, ContentMismatch, split_file

pytestmark = pytest.mark.asyncio
KiB, MiB = 1024, 1024**2

UPLOADER = """
import asyncio, sys, time
from vidsync.client import Client

def progress(n):
    print(n, flush=True)
    time.sleep(0.02)  # pace the upload (this stalls its event loop) so the kill lands mid-way

async def main():
    url, token, project, path = sys.argv[1:5]
    async with Client(url, token, upload_concurrency=1) as c:
        await c.upload_file(project, path, on_progress=progress)
        print("done", flush=True)

asyncio.run(main())
"""


async def owner_client(server: ServerProcess) -> tuple[Client, str]:
    c = Client(server.url)
    await c.register(f"t-{uuid.uuid4().hex[:8]}@example.com", "correct horse 1")
    return c, (await c.create_project("transfer"))["id"]


async def test_upload_sends_only_missing_blocks(server: ServerProcess, tmp_path: Path) -> None:
    c, pid = await owner_client(server)
    async with c:
        a = tmp_path / "a.bin"
        data = os.urandom(1 * MiB + 5)
        a.write_bytes(data)
        first = await c.upload_file(pid, a)
        assert first.uploaded_bytes == len(data) and first.size == len(data)
        # An edit in the middle: only that block goes up again.
        edited = bytearray(data)
        edited[300 * KiB] ^= 0xFF
        a.write_bytes(edited)
        manifest = split_file(a)
        second = await c.upload_file(pid, a, manifest=manifest)
        assert second.uploaded_bytes == 128 * KiB and second.hash == manifest.hash
        # A file made of repeated blocks sends each distinct block once.
        b = tmp_path / "b.bin"
        b.write_bytes(b"\1" * (512 * KiB))
        assert (await c.upload_file(pid, b)).uploaded_bytes == 128 * KiB
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        assert (await c.upload_file(pid, empty)).size == 0
        await c.post_changes(pid, [{"path": "e", "op": "create", "hash": manifest.hash,
                                    "size": manifest.size}])


async def test_file_changed_during_upload(server: ServerProcess, tmp_path: Path) -> None:
    c, pid = await owner_client(server)
    async with c:
        path = tmp_path / "a.bin"
        path.write_bytes(os.urandom(300 * KiB))
        manifest = split_file(path)
        path.write_bytes(os.urandom(300 * KiB))
        with pytest.raises(ContentMismatch):
            await c.upload_file(pid, path, manifest=manifest)
        with pytest.raises(ApiError) as e:
            await c.manifest(pid, manifest.hash)
        assert e.value.status == 404


async def test_resume_after_the_uploader_is_killed(server: ServerProcess, tmp_path: Path) -> None:
    c, pid = await owner_client(server)
    async with c:
        path = tmp_path / "big.bin"
        path.write_bytes(os.urandom(8 * MiB))  # 64 blocks of 128 KiB
        manifest = split_file(path)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", UPLOADER, server.url, c.token, pid, str(path),
            stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        assert proc.stdout is not None
        sent = 0
        while sent < 2 * MiB:
            line = (await proc.stdout.readline()).decode().strip()
            assert line and line != "done", "the upload finished before it could be cut"
            sent += int(line)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        # Let the server finish with the cut connection (its temporary file goes away).
        tmp = server.data_dir / "blobs" / pid / "tmp"
        for _ in range(100):
            if not any(tmp.iterdir()):
                break
            await asyncio.sleep(0.05)
        assert not any(tmp.iterdir())
        missing = set(await c.check_blocks(pid, [b.hash for b in manifest.blocks]))
        stored_before = sum(b.size for b in manifest.blocks if b.hash not in missing)
        assert 2 * MiB <= stored_before < manifest.size
        result = await c.upload_file(pid, path)
        assert result.uploaded_bytes == manifest.size - stored_before
        assert result.hash == manifest.hash
        out = tmp_path / "out.bin"
        await c.download_file(pid, manifest.hash, out)
        assert out.read_bytes() == path.read_bytes()


async def test_download_reuses_local_blocks(server: ServerProcess, tmp_path: Path) -> None:
    c, pid = await owner_client(server)
    async with c:
        src = tmp_path / "src.bin"
        data = os.urandom(1 * MiB)
        src.write_bytes(data)
        await c.upload_file(pid, src)
        manifest = split_file(src)
        local = {b.hash: data[b.offset:b.offset + b.size] for b in manifest.blocks[:3]}
        local[manifest.blocks[3].hash] = b"x" * manifest.blocks[3].size  # wrong bytes: not used
        asked = []

        def have_block(ref):
            asked.append(ref.hash)
            return local.get(ref.hash)

        dest = tmp_path / "dest.tmp"
        result = await c.download_file(pid, manifest, dest, have_block=have_block)
        assert dest.read_bytes() == data
        assert (result.reused_bytes, result.downloaded_bytes) == (3 * 128 * KiB, 5 * 128 * KiB)
        assert asked == [b.hash for b in manifest.blocks]
        # Resume: a partial (and partly damaged) file keeps its good blocks.
        damaged = bytearray(data[:600 * KiB])
        damaged[10] ^= 1
        dest.write_bytes(damaged)
        result = await c.download_file(pid, manifest.hash, dest)
        assert dest.read_bytes() == data
        assert result.reused_bytes == 3 * 128 * KiB  # blocks 1..3; 0 damaged, 4 cut short
        assert result.downloaded_bytes == 5 * 128 * KiB
        # A longer leftover file is cut to size.
        dest.write_bytes(data + b"junk")
        result = await c.download_file(pid, manifest, dest)
        assert dest.read_bytes() == data and result.downloaded_bytes == 0


async def test_block_damaged_on_disk_is_sent_again(server: ServerProcess, tmp_path: Path) -> None:
    """Blocks are made durable when their manifest is stored; one a crash damaged before that
    still "exists". The manifest's hash check finds it, the server drops it, the SDK resends it."""
    c, pid = await owner_client(server)
    async with c:
        path = tmp_path / "a.bin"
        path.write_bytes(os.urandom(400 * KiB))
        manifest = split_file(path)
        for ref in manifest.blocks:
            await c.put_block(pid, ref.hash, path.read_bytes()[ref.offset:ref.offset + ref.size])
        victim = manifest.blocks[1]
        stored = server.data_dir / "blobs" / pid / "blocks" / victim.hash[:2] / victim.hash
        stored.write_bytes(b"\0" * victim.size)  # what a power cut can leave behind
        assert await c.check_blocks(pid, [victim.hash]) == []
        result = await c.upload_file(pid, path)
        assert result.uploaded_bytes == victim.size
        assert stored.read_bytes() == path.read_bytes()[victim.offset:victim.offset + victim.size]


async def test_small_files_in_batches(server: ServerProcess) -> None:
    """put_small_files stores many frames in one request; get_small_files verifies each one and
    reports a frame whose stored block was damaged on the server's disk instead of returning it."""
    import hashlib

    from vidsync.content.batches import pack

    c, pid = await owner_client(server)
    async with c:
        frames = [os.urandom(2 * KiB) for _ in range(1500)] + [b""]
        files = [(hashlib.sha256(d).hexdigest(), d) for d in frames]
        batches = list(pack((f, len(f[1])) for f in files))
        assert [len(b) for b in batches] == [1000, 501]
        # All new but the empty file, which needs nothing stored.
        assert sum([await c.put_small_files(pid, b) for b in batches]) == len(files) - 1
        assert await c.put_small_files(pid, files[:3]) == 0
        with pytest.raises(ApiError) as bad:
            await c.put_small_files(pid, [(files[0][0], b"tampered")])
        assert bad.value.status == 422 and bad.value.code == "hash_mismatch"

        victim = files[7][0]
        stored = server.data_dir / "blobs" / pid / "blocks" / victim[:2] / victim
        stored.write_bytes(b"x" * 2048)
        got = await c.get_small_files(pid, [h for h, _ in files[:1000]])
        assert got.damaged == [victim] and not got.missing and not got.too_large
        assert got.files == {h: d for h, d in files[:1000] if h != victim}
