"""A hostile server cannot make the join agent write outside its folder or install bad content.

The one fake in these tests: a small aiohttp server that answers like Vidsync but serves crafted
paths (traversal, absolute, NUL, the agent's own state folder, names no filesystem holds) and
content that does not match its hash. Socket.IO is refused, so the agent also takes its
long-polling fallback. The agent itself is the real ``vidsync join`` process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from harness import free_port

from agent_join.helpers import Agent, wait_until
from vidsync.agent.mirror.status import mirror_status

PROJECT = "11111111-2222-3333-4444-555555555555"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


GOOD = b"the owner's real content\n"
EVIL = b"#!/bin/sh\necho pwned\n"
CLAIMED = b"what the change says the file holds\n"
# Blocks that are what their own hashes say, and as long as CLAIMED, but are not CLAIMED.
FORGED = EVIL.ljust(len(CLAIMED), b"#")
CORRUPTED = b"a block the server corrupts on the way\n"


class FakeServer:
    """Serves a snapshot and events naming ``files`` and the blocks in ``blocks``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.snapshot: list[dict] = []
        self.events: list[dict] = []
        self.events_open = threading.Event()  # events are served once the test says so
        self.manifests: dict[str, dict] = {}
        self.blocks: dict[str, bytes] = {}
        self.batches = False  # serve small files through content-batch/get too
        self.batch_asked: set[str] = set()  # hashes asked for there
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def file(self, path: str, claimed: bytes, served: bytes, block_body: bytes | None = None) -> dict:
        """A file whose change claims ``claimed``, whose manifest lists the block ``served``, and
        whose block endpoint answers ``block_body`` (default: ``served``) for it."""
        self.blocks[sha(served)] = served if block_body is None else block_body
        self.manifests[sha(claimed)] = {"hash": sha(claimed), "size": len(claimed),
                                        "blocks": [{"hash": sha(served), "size": len(served)}]}
        return {"path": path, "hash": sha(claimed), "size": len(claimed), "mtime": 0, "seq": 1}

    def app(self) -> web.Application:
        app = web.Application()
        base = f"/api/projects/{PROJECT}"

        async def join(request: web.Request) -> web.Response:
            return web.json_response({"project": {"id": PROJECT, "name": "evil"}, "role": "viewer"})

        async def projects(request: web.Request) -> web.Response:
            return web.json_response({"projects": [{"id": PROJECT, "name": "evil"}]})

        async def files(request: web.Request) -> web.Response:
            return web.json_response({"files": self.snapshot, "seq": 1})

        async def events(request: web.Request) -> web.Response:
            since = int(request.query.get("since_seq", 0))
            log = self.events if self.events_open.is_set() else []
            found = [e for e in log if e["seq"] > since]
            if not found:
                await asyncio.sleep(min(1, int(request.query.get("wait", 0))))
            last = max([1] + [e["seq"] for e in log])
            return web.json_response({"events": found, "last_seq": last, "has_more": False})

        async def manifest(request: web.Request) -> web.Response:
            m = self.manifests.get(request.match_info["hash"])
            if m is None:
                return web.json_response({"error": {"code": "not_found", "message": "no"}}, status=404)
            return web.json_response(m)

        async def block(request: web.Request) -> web.Response:
            return web.Response(body=self.blocks[request.match_info["hash"]])

        async def batch(request: web.Request) -> web.Response:
            """Small files' bytes as the blocks their manifests list (so, for a forged file,
            bytes that are not what its hash names)."""
            files, missing = [], []
            for h in (await request.json())["hashes"]:
                self.batch_asked.add(h)
                m = self.manifests.get(h)
                if m is None:
                    missing.append(h)
                    continue
                data = b"".join(self.blocks[b["hash"]] for b in m["blocks"])
                files.append({"hash": h, "data": base64.b64encode(data).decode()})
            return web.json_response({"files": files, "missing": missing, "too_large": []})

        app.router.add_post("/api/projects/join", join)
        app.router.add_get("/api/projects", projects)
        app.router.add_get(base + "/files", files)
        app.router.add_get(base + "/events", events)
        app.router.add_get(base + "/manifests/{hash}", manifest)
        app.router.add_get(base + "/blocks/{hash}", block)
        if self.batches:
            app.router.add_post(base + "/content-batch/get", batch)
        return app

    def start(self) -> FakeServer:
        self.thread.start()
        self.runner = web.AppRunner(self.app())

        async def up() -> None:
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(up(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


def all_files(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_hostile_paths_and_content_never_land(fake: FakeServer, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    mirror = tmp_path / "box" / "mirror"
    mirror.mkdir(parents=True)
    # A folder of the mirror that a local process replaced by a symlink pointing out of it.
    (mirror / "link").symlink_to(outside, target_is_directory=True)
    fake.snapshot = [
        fake.file("good.txt", GOOD, GOOD),
        fake.file("../escape.txt", EVIL, EVIL),
        fake.file("/tmp/absolute.txt", EVIL, EVIL),
        fake.file("ok/../../up.txt", EVIL, EVIL),
        fake.file("nul\x00byte.txt", EVIL, EVIL),
        fake.file(".vidsync/mirror.db", EVIL, EVIL),
        fake.file("link/through-symlink.txt", EVIL, EVIL),
        fake.file("x" * 300 + ".txt", EVIL, EVIL),  # no filesystem here holds a 300-byte name
        fake.file("cafe\u0301.txt", EVIL, EVIL),  # not NFC: two names for one file
        fake.file("wrong-hash.txt", CLAIMED, FORGED),  # blocks that are not the file the change names
        fake.file("bad-block.txt", CORRUPTED, CORRUPTED, EVIL),  # a block that is not its hash
    ]
    fake.events = [
        {"project_id": PROJECT, "seq": 2, "created_at": "2026-01-01T00:00:00.000Z",
         "change": {"path": "../../event-escape.txt", "op": "create", "hash": sha(EVIL),
                    "size": len(EVIL), "mtime": 0}},
        {"project_id": PROJECT, "seq": 3, "created_at": "2026-01-01T00:00:00.000Z",
         "change": {"path": "good.txt", "op": "update", "hash": sha(CLAIMED),
                    "size": len(CLAIMED), "mtime": 0}},
        {"project_id": PROJECT, "seq": 4, "created_at": "2026-01-01T00:00:00.000Z",
         "change": {"path": "../outside", "op": "delete", "hash": None, "size": None, "mtime": None}},
    ]
    fake.batches = True
    fake.start()
    (outside / "keep.txt").write_text("must survive")
    before = all_files(tmp_path)

    agent = Agent(fake, "any-token", mirror, tmp_path / "home")  # type: ignore[arg-type]
    (tmp_path / "home").mkdir()
    agent.start("invite-code")
    try:
        wait_until(lambda: (mirror / "good.txt").exists(), 20, "the snapshot's good file")
        fake.events_open.set()

        def settled() -> bool:
            status = mirror_status(mirror)
            return status["last_seq"] == 4 and len(status["failures"]) >= 10 \
                and status["connection"] == "http-fallback"  # no Socket.IO here: long-polling /events
        wait_until(settled, 30, "the agent to process the hostile snapshot and events")
        status = json.loads(agent.run("status", str(mirror), "--json").stdout)["mirror"]
        assert agent.proc.poll() is None, agent.log  # still running
        # Bad content and the symlinked folder (a local condition) are retried; bad names never are.
        assert status["pending_downloads"] == 4

        # good.txt arrived; its update to content the server could not prove was refused, and the
        # version already there was kept.
        assert (mirror / "good.txt").read_bytes() == GOOD
        for path in ("good.txt", "wrong-hash.txt", "bad-block.txt"):
            assert status["failures"][path].startswith("rejected"), status["failures"]
        assert not (mirror / "wrong-hash.txt").exists() and not (mirror / "bad-block.txt").exists()
        # They came through the small-file batch first, and were not written from it either.
        assert {sha(CLAIMED), sha(CORRUPTED)} <= fake.batch_asked
        # Nothing was written anywhere else; the symlinked folder's target is untouched.
        after = all_files(tmp_path)
        new = {p for p in after - before if not p.startswith(("box/mirror/", "home/"))}
        assert new == set(), new
        assert all_files(outside) == {"keep.txt"}
        assert set(all_files(mirror)) - {p for p in all_files(mirror) if p.startswith(".vidsync/")} \
            == {"good.txt"}
        # The agent's own database was not overwritten.
        assert (mirror / ".vidsync/mirror.db").read_bytes()[:15] == b"SQLite format 3"
        assert not any(EVIL in (mirror / p).read_bytes() for p in all_files(mirror)
                       if not p.startswith(".vidsync/"))
        for path in ("../escape.txt", "/tmp/absolute.txt", "ok/../../up.txt", "nul\x00byte.txt",
                     ".vidsync/mirror.db", "link/through-symlink.txt", "x" * 300 + ".txt",
                     "cafe\u0301.txt", "../../event-escape.txt"):
            assert status["failures"][path].startswith("refused"), (path, status["failures"])
    finally:
        agent.kill()  # it would run on, long-polling the fake server's port



# What a terminal acts on: clear the screen, write the clipboard (OSC 52), move the cursor up and
# erase the line (to forge an earlier line), and a bidi override that flips the name's ending.
CLEAR = "\x1b[2J"
CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4K\x07"
FORGE = "\x1b[1A\x1b[2K"
BIDI = "\u202e"
HOSTILE = {
    f"clear{CLEAR}.txt": "clear\\x1b[2J.txt",
    f"clip{CLIPBOARD}.txt": "clip\\x1b]52;c;cm0gLXJmIH4K\\x07.txt",
    f"forge{FORGE}created   all-good.txt": "forge\\x1b[1A\\x1b[2Kcreated   all-good.txt",
    f"bidi{BIDI}txt.exe": "bidi\\u202etxt.exe",
}


def test_hostile_names_are_escaped_in_everything_the_agent_prints(fake: FakeServer, tmp_path: Path):
    """Names carrying terminal control sequences are shown escaped by the join agent's output and
    log, 'vidsync status' and 'vidsync events': no ESC byte (or other control) reaches the
    terminal. A manifest whose blocks do not add up is reported as rejected content, with why."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    fake.snapshot = [fake.file(name, GOOD + name.encode(), GOOD + name.encode()) for name in HOSTILE]
    bad_sizes = fake.file("sizes.bin", CLAIMED, CLAIMED)
    manifest = fake.manifests[bad_sizes["hash"]]
    manifest["blocks"] = [{"hash": b["hash"], "size": b["size"] + 7} for b in manifest["blocks"]]
    fake.snapshot.append(bad_sizes)
    fake.events = [{"project_id": PROJECT, "seq": 2, "created_at": f"2026-01-01T00:00:00Z{FORGE}",
                    "change": {"path": f"gone{CLIPBOARD}.txt", "op": "delete", "hash": None,
                               "size": None, "mtime": None}}]
    fake.events_open.set()
    fake.start()
    home = tmp_path / "home"
    home.mkdir()
    agent = Agent(fake, "any-token", mirror, home)  # type: ignore[arg-type]
    agent.start("invite-code")
    try:
        # Control characters in a name are refused (the bidi override is legal, if sly).
        wait_until(lambda: (mirror / f"bidi{BIDI}txt.exe").exists(), 20, "the legal file")
        wait_until(lambda: "sizes.bin" in mirror_status(mirror)["failures"], 20,
                   "the bad manifest to be refused")
        wait_until(lambda: "rejected   sizes.bin" in agent.log, 10, "the refusal to be printed")
        status = agent.run("status", str(mirror))
        events = agent.run("events", PROJECT)
    finally:
        agent.kill()

    failure = mirror_status(mirror)["failures"]["sizes.bin"]
    assert failure.startswith("rejected: "), failure
    assert "the blocks add up to" in failure and "No such file" not in failure, failure

    assert status.returncode == 0 and events.returncode == 0, (status.stderr, events.stderr)
    for name, output in (("join", agent.log), ("status", status.stdout + status.stderr),
                         ("events", events.stdout + events.stderr)):
        assert "\x1b" not in output and "\x07" not in output and BIDI not in output, (name, output)
    for raw, shown in HOSTILE.items():
        what = "created" if BIDI in raw else "refused"
        assert f"{what:<10} {shown}" in agent.log, (shown, agent.log)
        if what == "refused":
            assert f"    {shown}: refused: path contains a control character" in status.stdout, \
                status.stdout
    assert "    sizes.bin: rejected: manifest " in status.stdout, status.stdout
    assert "gone\\x1b]52;c;cm0gLXJmIH4K\\x07.txt" in events.stdout, events.stdout
    assert "2026-01-01T00:00:00Z\\x1b[1A\\x1b[2K" in events.stdout, events.stdout
