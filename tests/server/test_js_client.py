"""The npm ``socket.io-client`` in real Node against the server: the seed's way of subscribing and
the object form with since_seq, over WebSocket, long-polling and polling-then-upgrade."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ROOT, Api, ServerProcess, change

from server.helpers import all_events, wait_until

JS_DIR = ROOT / "tests" / "js"


@pytest.fixture(scope="session")
def node_client() -> Path:
    """tests/js with its node_modules, installed from the committed lock file if missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("these tests need Node.js and npm on PATH")
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True,
                       capture_output=True, timeout=300)
    return JS_DIR / "client.mjs"


class JsClient:
    """One ``node client.mjs`` process: its stdout lines, parsed, and commands over stdin."""

    def __init__(self, script: Path, url: str, token: str, mode: str, seed_projects: list[str]) -> None:
        self.proc = subprocess.Popen(["node", str(script), url, token, mode, *seed_projects],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: list[dict] = []
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def of_type(self, kind: str) -> list[dict]:
        return [line for line in list(self.lines) if line["type"] == kind]

    def wait_for(self, kind: str, timeout: float = 15) -> dict:
        def found() -> dict | None:
            if self.proc.poll() is not None and not self.of_type(kind):
                raise AssertionError(f"node exited {self.proc.returncode}: {self.proc.stderr.read()}")
            return (self.of_type(kind) or [None])[0]
        return wait_until(found, timeout, f"a {kind!r} line from node")

    def emit(self, name: str, arg: Any) -> Any:
        self._next_id += 1
        ident = self._next_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": ident, "emit": name, "arg": arg}) + "\n")
        self.proc.stdin.flush()
        acks = lambda: [a for a in self.of_type("ack") if a["id"] == ident]  # noqa: E731
        return wait_until(acks, 15, f"the ack of {name}")[0]["data"]

    def events(self, name: str = "project:event") -> list[dict]:
        return [line["data"] for line in self.of_type("event") if line["name"] == name]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def node(node_client: Path, server: ServerProcess) -> Iterator[Callable[..., JsClient]]:
    made: list[JsClient] = []

    def start(token: str, mode: str, seed_projects: list[str] = ()) -> JsClient:
        client = JsClient(node_client, server.url, token, mode, list(seed_projects))
        made.append(client)
        return client

    yield start
    for client in made:
        client.close()


def post_some(api: Api, token: str, project: str, posts: int, prefix: str) -> list[int]:
    seqs = []
    for i in range(posts):
        r = api.post_changes(token, project, [change(f"{prefix}/{i}/{j}.mov", n=j % 2)
                                               for j in range(1 + i % 4)])
        assert r.status_code == 200, r.text
        seqs += [x["seq"] for x in r.json()["results"]]
    return seqs


@pytest.mark.parametrize("mode", ["websocket", "polling", "upgrade"])
def test_seed_form_subscription(api: Api, owner, project, node, mode: str) -> None:
    token, _ = owner
    viewer, _ = api.viewer(token, project)
    post_some(api, token, project, 2, "before")
    client = node(viewer, mode, [project])
    # With upgrade the client may already have moved to WebSocket when it reports the connection.
    assert client.wait_for("connect")["transport"] in {"websocket": ["websocket"], "polling": ["polling"],
                                                       "upgrade": ["polling", "websocket"]}[mode]
    # Packets from one client are handled in order: once this is acked, so is the subscribe.
    assert client.emit("unsubscribe:project", "barrier")["ok"] is True
    seqs = post_some(api, token, project, 20, "live")
    wait_until(lambda: len(client.events()) >= len(seqs), what="every live event")
    received = client.events()
    assert [e["seq"] for e in received] == seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert received == all_events(api, token, project, since_seq=seqs[0] - 1)
    if mode == "upgrade":
        assert client.wait_for("upgrade")["transport"] == "websocket"


@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_object_form_with_since_seq(api: Api, owner, project, node, mode: str) -> None:
    token, _ = owner
    before = post_some(api, token, project, 8, "before")
    client = node(token, mode)
    client.wait_for("connect")
    ack = client.emit("subscribe:project", {"projectId": project, "since_seq": 5})
    assert ack == {"ok": True, "project_id": project, "last_seq": before[-1]}
    live = post_some(api, token, project, 15, "live")
    wait_until(lambda: len(client.events()) >= before[-1] - 5 + len(live), what="every event")
    received = client.events()
    assert [e["seq"] for e in received] == list(range(6, live[-1] + 1))
    assert received == all_events(api, token, project, since_seq=5)


@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_unauthorized(node, mode: str) -> None:
    client = node("not-a-token", mode)
    err = client.wait_for("connect_error")
    assert err["message"] == "unauthorized" and err["data"]["code"] == "unauthorized"
    assert not client.of_type("connect")
