"""Engine.IO heartbeat: clients that answer pings stay connected, one that does not is closed."""

from __future__ import annotations

import json
import time

import websocket
from harness import Api, change

from server.helpers import wait_until


def test_silent_client_is_closed_and_live_ones_stay(server_factory, listen) -> None:
    server = server_factory(args=["--ping-interval", "0.3", "--ping-timeout", "0.3"])
    api = Api(server.url)
    token, _ = api.register("owner")
    project = api.project(token)
    live = [listen(token, ["websocket"], url=server.url), listen(token, ["polling"], url=server.url)]
    for client in live:
        assert client.subscribe(project)["ok"]

    ws = websocket.create_connection(server.url.replace("http", "ws", 1)
                                     + "/socket.io/?EIO=4&transport=websocket", timeout=5)
    opened = json.loads(ws.recv()[1:])
    assert opened["pingInterval"] == 300 and opened["pingTimeout"] == 300
    ws.send("40" + json.dumps({"token": token}))
    assert ws.recv().startswith("40")
    # Never answer the pings: the server closes the connection after one interval and timeout.
    start = time.monotonic()
    frames = []
    try:
        while time.monotonic() - start < 5:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            frames.append(data)
    except websocket.WebSocketConnectionClosedException:
        pass
    took = time.monotonic() - start
    assert b"2" in frames, frames  # it was pinged
    assert took < 2, f"closed after {took:.1f} s"

    # The clients that answer are still there after several intervals, and still served.
    time.sleep(1)
    r = api.post_changes(token, project, [change("late.mov")])
    for client in live:
        wait_until(lambda c=client: c.seqs() == [r.json()["last_seq"]], what="the event")
        assert client.connected
