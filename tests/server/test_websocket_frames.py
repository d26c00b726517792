"""The WebSocket layer the server runs after the handshake (realtime/wsconn.py), at the frame
level: fragmented messages, ping, close, and the frames it must refuse."""

from __future__ import annotations

import json
import socket

import pytest
import websocket
from harness import Api


def connect(url: str, token: str) -> websocket.WebSocket:
    ws = websocket.create_connection(
        url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket", timeout=10)
    assert ws.recv().startswith("0{")  # Engine.IO open
    ws.send("40" + json.dumps({"token": token}))
    assert ws.recv().startswith("40{")  # Socket.IO connected
    return ws


def close_code(ws: websocket.WebSocket) -> int | None:
    """Read until the server's close frame; its status code (None if the socket just ended)."""
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big")
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return None


def test_fragmented_message_ping_and_close(api: Api, owner, project) -> None:
    ws = connect(api.base_url, owner[0])
    text = "421" + json.dumps(["subscribe:project", {"projectId": project}])
    ws.send_frame(websocket.ABNF.create_frame(text[:5], websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame(text[5:9], websocket.ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame(text[9:], websocket.ABNF.OPCODE_CONT, fin=1))
    ack = ws.recv()
    assert ack.startswith("431") and json.loads(ack[3:])[0]["ok"] is True, ack
    # The subscription's lock snapshot follows its ack; then the pong answers the ping.
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_TEXT and data.startswith(b'42["project:locks"'), data
    ws.ping(b"are you there")
    opcode, data = ws.recv_data(control_frame=True)
    assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b"are you there")
    ws.send_close(1000)
    assert close_code(ws) == 1000


@pytest.mark.parametrize(("frame", "code"), [
    (websocket.ABNF.create_frame(b"\x00\x01", websocket.ABNF.OPCODE_BINARY), 1007),
    (websocket.ABNF.create_frame("4", websocket.ABNF.OPCODE_CONT), 1002),
    (websocket.ABNF.create_frame(b"\xff\xfe", websocket.ABNF.OPCODE_TEXT), 1007),
])
def test_refused_frames_close_the_connection(api: Api, owner, frame, code) -> None:
    ws = connect(api.base_url, owner[0])
    ws.send_frame(frame)
    assert close_code(ws) == code


def test_unmasked_and_oversized_frames_are_refused(server_factory) -> None:
    server = server_factory()
    api = Api(server.url)
    token, _ = api.register("owner")
    ws = connect(server.url, token)
    ws.sock.sendall(b"\x81\x034ab")  # a client frame without a mask
    assert close_code(ws) == 1002
    ws = connect(server.url, token)
    # A header announcing more than the server's maximum payload (1 MB): refused before the body.
    ws.sock.sendall(b"\x81\xff" + (2_000_000).to_bytes(8, "big") + b"mask")
    assert close_code(ws) == 1009


def test_a_socket_that_is_not_a_websocket_gets_400(server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: not-base64\r\n\r\n")
        status = s.recv(4096).split(b"\r\n", 1)[0]
    assert status.startswith(b"HTTP/1.1 400"), status
