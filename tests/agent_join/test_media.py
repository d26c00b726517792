"""Big media: fetched while the owner uploads, never shown early, never installed from a tampered
block, and byte-identical after a kill -9 of the uploader, the join agent or the server.

Everything is real: the server process, ``vidsync join`` processes, an SDK uploader process that
is killed, files on disk. The server's block files are tampered with on its disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import ROOT, Api, ServerProcess, scratch_database

from agent_join.helpers import Agent, Owner, viewer_token, wait_until
from vidsync.agent.mirror.status import mirror_status
from vidsync.client import Client, split_file

MiB = 1024 * 1024

# Uploads a file with its path in the project (so members hear ``project:upload``), printing the
# bytes of each block sent and "uploaded" at the end; ``pace`` seconds after each block.
UPLOADER = """
import asyncio, sys, time
from vidsync.client import Client, split_file

async def main():
    url, token, project, local, path, pace = sys.argv[1:7]
    def progress(n):
        print(n, flush=True)
        time.sleep(float(pace))  # stalls this process's loop: a slow uplink
    async with Client(url, token, upload_concurrency=2) as c:
        await c.upload_file(project, local, manifest=split_file(local), path=path,
                            on_progress=progress)
    print("uploaded", flush=True)

asyncio.run(main())
"""


def sha(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def random_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for _ in range(size // (8 * MiB)):
            f.write(os.urandom(8 * MiB))
        f.write(os.urandom(size % (8 * MiB)))


def start_uploader(owner: Owner, local: Path, path: str, pace: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", UPLOADER, owner.server.url, owner.token, owner.project_id,
         str(local), path, str(pace)], stdout=subprocess.PIPE, text=True, cwd=ROOT)


def temp_bytes(mirror: Path) -> int:
    """Bytes in the mirror's download temp files (fetched, not installed)."""
    tmp = mirror / ".vidsync" / "tmp"
    try:
        return sum(os.stat(e).st_blocks * 512 for e in os.scandir(tmp))
    except FileNotFoundError:
        return 0


def post(owner: Owner, path: str, local: Path, op: str = "create") -> int:
    manifest = split_file(local)

    async def go() -> int:
        async with Client(owner.server.url, owner.token) as c:
            out = await c.post_changes(owner.project_id, [{
                "path": path, "op": op, "hash": manifest.hash, "size": manifest.size,
                "mtime": int(time.time() * 1000)}])
            return out["last_seq"]
    return asyncio.run(go())


def following(make_agent: Callable[..., Agent], server: ServerProcess, api: Api,
              owner: Owner) -> Agent:
    agent = make_agent(server, viewer_token(api)).start(owner.invite())
    db = agent.mirror / ".vidsync" / "mirror.db"
    wait_until(lambda: db.exists() and mirror_status(agent.mirror)["connection"] == "websocket",
               30, "the join agent to connect")
    return agent


def test_fetched_while_uploading_and_never_shown_before_verified(
        server: ServerProcess, api: Api, owner: Owner, make_agent: Callable[..., Agent],
        tmp_path: Path) -> None:
    agent = following(make_agent, server, api, owner)
    local = tmp_path / "take.mov"
    random_file(local, 12 * MiB)  # 96 blocks of 128 KiB
    uploader = start_uploader(owner, local, "clips/take.mov", 0.02)
    shown = agent.mirror / "clips" / "take.mov"
    fetched_early = 0
    assert uploader.stdout is not None
    for line in uploader.stdout:
        assert not shown.exists(), "the file was shown before its change was posted"
        fetched_early = max(fetched_early, temp_bytes(agent.mirror))
        if line.strip() == "uploaded":
            break
    assert uploader.wait(30) == 0
    wait_until(lambda: temp_bytes(agent.mirror) >= 12 * MiB or shown.exists(), 30)
    assert not shown.exists()
    # The mirror fetched blocks while the owner was still sending them.
    assert fetched_early > 0
    post(owner, "clips/take.mov", local)
    wait_until(shown.exists, 30, "the file in the mirror")
    assert sha(shown) == sha(local)
    assert "created" in agent.log


def test_a_block_tampered_with_on_the_server_never_reaches_a_mirror(
        server: ServerProcess, api: Api, owner: Owner, make_agent: Callable[..., Agent],
        tmp_path: Path) -> None:
    agent = following(make_agent, server, api, owner)
    local = tmp_path / "shot.mov"
    random_file(local, 3 * 128 * 1024 + 5)
    manifest = split_file(local)
    block = manifest.blocks[1]

    async def upload() -> None:
        async with Client(server.url, owner.token) as c:
            await c.upload_file(owner.project_id, local, manifest=manifest)
    asyncio.run(upload())
    stored = server.data_dir / "blobs" / owner.project_id / "blocks" / block.hash[:2] / block.hash
    good = stored.read_bytes()
    stored.write_bytes(os.urandom(len(good)))  # same size, other bytes: bit rot or an intruder
    post(owner, "shot.mov", local)
    wait_until(lambda: "shot.mov" in mirror_status(agent.mirror)["failures"], 30,
               "the mirror to report the bad block")
    failure = mirror_status(agent.mirror)["failures"]["shot.mov"]
    assert "does not match its hash" in failure, failure
    assert not (agent.mirror / "shot.mov").exists()
    assert temp_bytes(agent.mirror) == 0  # the bad bytes were not kept to resume from
    # Repaired on the server: the mirror's retry fetches it again and installs the right bytes.
    stored.write_bytes(good)
    wait_until((agent.mirror / "shot.mov").exists, 60, "the retried file in the mirror")
    assert sha(agent.mirror / "shot.mov") == manifest.hash


def test_a_damaged_stored_block_is_found_and_sent_again_by_the_uploader(
        server: ServerProcess, owner: Owner, tmp_path: Path) -> None:
    """A block damaged on the server's disk after it was checked is caught by the in-order
    whole-file hash when the manifest is posted; the uploader is asked for it again."""
    local = tmp_path / "plate.exr"
    random_file(local, 5 * 128 * 1024)
    manifest = split_file(local)
    blocks = server.data_dir / "blobs" / owner.project_id / "blocks"

    data = local.read_bytes()

    async def go() -> tuple[int, bytes]:
        async with Client(server.url, owner.token) as c:
            for ref in manifest.blocks:
                await c.put_block(owner.project_id, ref.hash,
                                  data[ref.offset:ref.offset + ref.size])
            ref = manifest.blocks[2]
            (blocks / ref.hash[:2] / ref.hash).write_bytes(os.urandom(ref.size))
            result = await c.upload_file(owner.project_id, local, manifest=manifest)
            out = tmp_path / "back.exr"
            await c.download_file(owner.project_id, manifest.hash, out)
            return result.uploaded_bytes, await asyncio.to_thread(out.read_bytes)

    sent, back = asyncio.run(go())
    assert sent == manifest.blocks[2].size  # only the damaged block went again
    assert back == local.read_bytes()


@pytest.mark.timeout(900)
def test_kill_9_of_uploader_join_agent_and_server_mid_256_mib(
        make_agent: Callable[..., Agent], tmp_path: Path) -> None:
    own = ServerProcess(tmp_path / "server", ["--login-attempts", "100000"],
                        database=scratch_database()).start()
    try:
        api = Api(own.url)
        owner = Owner(own, api, tmp_path / "src")
        local = tmp_path / "src" / "reel.mov"
        size = 256 * MiB
        random_file(local, size)
        digest = sha(local)

        # 1. The uploader dies after 64 MiB; a new run sends only the rest.
        uploader = start_uploader(owner, local, "reel.mov", 0.002)
        assert uploader.stdout is not None
        sent = 0
        for line in uploader.stdout:
            assert line.strip() != "uploaded", "the upload finished before it could be cut"
            sent += int(line)
            if sent >= 64 * MiB:
                break
        uploader.send_signal(signal.SIGKILL)
        uploader.wait()

        async def resume() -> int:
            async with Client(own.url, owner.token) as c:
                return (await c.upload_file(owner.project_id, local, path="reel.mov")).uploaded_bytes
        rest = asyncio.run(resume())
        assert 0 < rest <= size - 64 * MiB
        post(owner, "reel.mov", local)

        # 2. The join agent dies mid-download; started again, it resumes.
        agent = make_agent(own, viewer_token(api)).start(owner.invite())
        shown = agent.mirror / "reel.mov"
        wait_until(lambda: temp_bytes(agent.mirror) >= 32 * MiB or shown.exists(), 120,
                   "the download to start")
        agent.kill()
        assert not shown.exists(), "too fast to cut: the download finished first"
        first_part = temp_bytes(agent.mirror)
        agent.start()

        # 3. The server dies mid-download; started again, the agent resumes once more.
        wait_until(lambda: temp_bytes(agent.mirror) > first_part + 16 * MiB or shown.exists(),
                   120, "the download to go on")
        own.kill()
        assert not shown.exists(), "too fast to cut: the download finished first"
        time.sleep(1)
        own.start()
        wait_until(shown.exists, 300, "the whole file in the mirror")
        assert sha(shown) == digest
        assert mirror_status(agent.mirror)["failures"] == {}
    finally:
        own.kill()


def test_an_edit_takes_unchanged_blocks_only_from_an_untouched_old_copy(
        server: ServerProcess, api: Api, owner: Owner, make_agent: Callable[..., Agent]) -> None:
    """Unchanged blocks come from the old copy unread only while its size, mtime, inode and ctime
    are what the agent verified. A copy rewritten with its mtime put back (same size, inode and
    mtime: only the ctime tells) is read and checked block by block, and its bad block is
    fetched, never copied into the new version."""
    block = 128 * 1024
    v1 = os.urandom(4 * block)
    owner.write("cut.mov", v1)
    owner.publish()
    agent = following(make_agent, server, api, owner)
    copy = agent.mirror / "cut.mov"
    wait_until(lambda: copy.exists() and copy.read_bytes() == v1, 30, "the first version")
    st = copy.stat()
    with open(copy, "r+b") as f:  # block 0 rewritten behind the agent's back, mtime put back
        f.write(os.urandom(block))
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    v2 = v1[:3 * block] + os.urandom(block)  # the owner changes the last block only
    owner.write("cut.mov", v2)
    owner.publish()
    wait_until(lambda: copy.read_bytes() == v2, 30, "the second version")
    # Block 0 again, and the new block 3 (said just after the file is in place).
    wait_until(lambda: "fetched" in agent.log, 10, "the agent's report of what it fetched")
    assert "fetched 256.0 KiB" in agent.log, agent.log


def test_copier_methods_copy_the_same_bytes(tmp_path: Path) -> None:
    from vidsync.agent.mirror.copier import Copier

    src, data = tmp_path / "src", os.urandom(3 * MiB + 17)
    src.write_bytes(data)
    for copier, expected in ((Copier(reflink=False, copy_file_range=False), "write"),
                             (Copier(reflink=False), "copy_file_range"),
                             (Copier(), None)):
        dst = tmp_path / f"dst-{expected}"
        with open(src, "rb") as s, open(dst, "w+b") as d:
            d.truncate(len(data))
            used = {copier.copy(s.fileno(), 0, d.fileno(), 0, MiB),
                    copier.copy(s.fileno(), 2 * MiB, d.fileno(), MiB, MiB + 17)}
        assert dst.read_bytes() == data[:MiB] + data[2 * MiB:] + bytes(MiB)
        if expected is not None:
            assert used == {expected}
        # A reflink where the filesystem has them (Btrfs, XFS), else copy_file_range.
        assert sum(copier.moved.values()) == 2 * MiB + 17
