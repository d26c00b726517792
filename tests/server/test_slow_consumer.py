"""A subscriber that stops reading is dropped and does not delay anyone else."""

from __future__ import annotations

import json
import re
import socket
import statistics
import subprocess
import time

import pytest
import websocket
from harness import Api, change

from server.helpers import Listener, wait_until

MAX_BUFFER = 65536
POSTS, PER_POST = 40, 5


def big_path(post: int, i: int) -> str:
    """About 3 KB of path, so a few posts fill a small buffer."""
    return "/".join([f"p{post}-{i}"] + ["x" * 250] * 12) + ".mov"


class StalledClient:
    """A raw WebSocket client that does the Engine.IO and Socket.IO handshakes, subscribes, and
    then never reads again; its tiny receive buffer makes the server's side fill up quickly."""

    def __init__(self, url: str, token: str, project: str) -> None:
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = websocket.create_connection(
            ws_url, timeout=10, sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
        assert self.ws.recv().startswith("0{")  # Engine.IO open
        self.ws.send("40" + json.dumps({"token": token}))
        assert self.ws.recv().startswith("40{")  # Socket.IO connected
        self.ws.send("421" + json.dumps(["subscribe:project", project]))
        ack = self.ws.recv()
        assert ack.startswith("431") and json.loads(ack[3:])[0]["ok"] is True, ack

    def dropped(self, timeout: float = 10) -> bool:
        """Read what is left: True if the server closed or reset the connection."""
        self.ws.settimeout(timeout)
        try:
            while True:
                opcode, _ = self.ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return True
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return True
        except websocket.WebSocketTimeoutException:
            return False


def run_workload(api: Api, token: str, project: str, healthy: list[Listener], round_: int) -> list[float]:
    """Post POSTS batches at a steady pace; the latency of every event at every healthy client."""
    posted_at: dict[int, float] = {}
    for post in range(POSTS):
        start = time.monotonic()
        r = api.post_changes(token, project, [change(big_path(post, i), n=round_) for i in range(PER_POST)])
        assert r.status_code == 200, r.text
        for x in r.json()["results"]:
            posted_at[x["seq"]] = start
        time.sleep(0.01)
    last = max(posted_at)
    latencies = []
    for client in healthy:
        wait_until(lambda c=client: last in c.seqs(), 15, "every event at a healthy client")
        arrivals = {data["seq"]: t for name, data, t in client.received if name == "project:event"}
        assert set(posted_at) <= set(arrivals), "a healthy client missed events"
        latencies += [arrivals[seq] - posted_at[seq] for seq in posted_at]
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def test_stalled_subscriber_is_dropped_without_delaying_others(server_factory, listen) -> None:
    server = server_factory(args=["--max-buffer", str(MAX_BUFFER)])
    api = Api(server.url)
    token, _ = api.register("owner")
    project = api.project(token)
    healthy = [listen(token, ["websocket"], url=server.url) for _ in range(3)]
    for client in healthy:
        assert client.subscribe(project)["ok"]

    baseline = run_workload(api, token, project, healthy, 0)
    # Two tries at most: this machine's other load can add a stall of its own to one run.
    for attempt in range(1, 3):
        stalled = StalledClient(server.url, token, project)
        with_stalled = run_workload(api, token, project, healthy, attempt)
        assert stalled.dropped(), "the stalled connection is still open"
        assert server.log.count("slow consumer") == attempt
        if p99(with_stalled) < 0.2:
            break
    print(f"\nper-event latency p50/p99: without a stalled subscriber "
          f"{statistics.median(baseline) * 1000:.1f}/{p99(baseline) * 1000:.1f} ms, with one "
          f"{statistics.median(with_stalled) * 1000:.1f}/{p99(with_stalled) * 1000:.1f} ms")
    assert p99(with_stalled) < 0.2
    assert all(c.connected for c in healthy)


@pytest.mark.parametrize("transport", [["polling"]])
def test_polling_client_that_stops_polling_is_dropped(server_factory, listen, transport) -> None:
    """Over long-polling the queue is bounded the same way."""
    server = server_factory(args=["--max-buffer", str(MAX_BUFFER)])
    api = Api(server.url)
    token, _ = api.register("owner")
    project = api.project(token)
    healthy = listen(token, transport, url=server.url)
    assert healthy.subscribe(project)["ok"]
    # A polling session that subscribes and then never polls again.
    import httpx
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    sid = json.loads(httpx.get(base).text[1:])["sid"]
    assert httpx.post(f"{base}&sid={sid}", content="40" + json.dumps({"token": token})).text == "ok"
    assert httpx.get(f"{base}&sid={sid}").text.startswith("40{")
    subscribe = "421" + json.dumps(["subscribe:project", project])
    assert httpx.post(f"{base}&sid={sid}", content=subscribe).text == "ok"
    assert httpx.get(f"{base}&sid={sid}").text.startswith("431")
    for post in range(10):
        api.post_changes(token, project, [change(big_path(post, i)) for i in range(PER_POST)])
    assert healthy.wait_seqs(10 * PER_POST) == list(range(1, 10 * PER_POST + 1))
    wait_until(lambda: "slow consumer" in server.log, what="the slow consumer log line")
    r = httpx.get(f"{base}&sid={sid}")
    assert r.status_code == 400 or r.text.startswith("1"), r.text  # gone, or told to close


def server_side(server_port: int, client_port: int) -> list[dict]:
    """The server's end of one TCP connection as ``ss -tnie`` shows it (iproute2): its state, its
    send queue and its kernel send buffer (``tb`` in skmem). Empty once the socket is gone."""
    out = subprocess.run(
        ["ss", "-H", "-tnie", "-m", "state", "all",
         f"( sport = :{server_port} and dport = :{client_port} )"],
        capture_output=True, text=True, check=True).stdout
    entries: list[str] = []
    for line in out.splitlines():
        if line[:1].isspace() and entries:
            entries[-1] += line  # the details of the socket on the line before
        elif line.strip():
            entries.append(line)
    sockets = []
    for entry in entries:
        fields = entry.split()
        tb = re.search(r"\btb(\d+)", entry)
        sockets.append({"state": fields[0], "send_q": int(fields[2]),
                        "sndbuf": int(tb.group(1)) if tb else None, "line": entry})
    return sockets


def test_dropped_slow_consumer_is_reset_and_frees_kernel_memory(server_factory) -> None:
    """A stalled subscriber pins at most the named kernel send buffer, however large
    --max-buffer is, and when it is dropped its connection is reset: no FIN-WAIT-1 socket is
    left holding its unsent bytes."""
    max_buffer, send_buffer = 2 * 1024 * 1024, 256 * 1024
    server = server_factory(args=["--max-buffer", str(max_buffer), "--send-buffer", "256K"])
    port = int(server.url.rsplit(":", 1)[1])
    api = Api(server.url)
    token, _ = api.register("owner")
    project = api.project(token)
    stalled = StalledClient(server.url, token, project)
    client_port = stalled.ws.sock.getsockname()[1]
    [sock] = server_side(port, client_port)
    assert sock["state"] == "ESTAB" and sock["sndbuf"] == 2 * send_buffer, sock

    # About 1.3 MB of events: more than the kernel may hold, less than --max-buffer.
    batch = 50
    for post in range(8):
        r = api.post_changes(token, project, [change(big_path(post, i)) for i in range(batch)])
        assert r.status_code == 200, r.text
    wait_until(lambda: server_side(port, client_port)[0]["send_q"] > send_buffer, 10,
               "the stalled connection's send queue to fill")
    [sock] = server_side(port, client_port)
    assert "slow consumer" not in server.log
    assert sock["send_q"] <= 2 * send_buffer + 64 * 1024, sock

    # Past --max-buffer: dropped, and the kernel lets go of the socket and its queue at once.
    for post in range(8, 20):
        r = api.post_changes(token, project, [change(big_path(post, i)) for i in range(batch)])
        assert r.status_code == 200, r.text
        if "slow consumer" in server.log:
            break
    wait_until(lambda: "slow consumer" in server.log, 10, "the slow consumer to be dropped")
    wait_until(lambda: not server_side(port, client_port), 2,
               "the dropped connection to leave the server's socket table")
    with pytest.raises((ConnectionResetError, websocket.WebSocketConnectionClosedException)):
        stalled.ws.settimeout(10)
        while True:  # what the client had received, then the reset
            stalled.ws.recv_data()
