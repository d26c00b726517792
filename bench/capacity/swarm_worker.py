"""One process of the subscriber swarm: many light Socket.IO clients, every delivery checked.

Each client speaks Engine.IO v4 / Socket.IO v5 over a bare WebSocket (aiohttp): no long-polling
handshake, no upgrade, no per-client timers, so one process holds thousands of connections and
spends little CPU per delivery. python-socketio's client costs a task, a queue and a timer per
connection, which at 10,000 clients would use the cores the server is being measured on.

Every client checks its stream after the seq it subscribed from (``base``): each seq exactly
once, in order, none missing. Changes whose path is ``cap/<tag>/<unix time sent>`` are timed
on arrival (the poster runs on the same machine, so the clocks agree).

The driver (``swarm.py``) sends one JSON command per line on stdin; each gets one JSON reply
line on stdout: ``{"id": <command id>, ...}``. Commands:

  open       {url, token, mode, first, count, concurrency}: connect ``count`` clients (Socket.IO
             CONNECT answered); ``mode`` is ``vidsync`` (token, acked subscribe with since_seq)
             or ``seed`` (the Node reference: no auth, subscribe with a bare id, no ack)
  subscribe  {project, start, stop, since_seq, batch, concurrency}: subscribe clients
             [start, stop), with ``batch: true`` for one ``project:events`` per posted batch
  wait       {targets, timeout}: until every subscribed client has every seq up to its target:
             one seq, or {project: seq}; null: until each has received something (seed)
  drop       shut every subscribed client's socket at once, as a network drop would
  reconnect  {target, timeout}: reconnect the dropped clients, resubscribe from the last
             seq each saw; answers when all have ``target``, with each client's catch-up time
  report     {targets}: deliveries and timed latencies since the last report; violations
             and, against the targets, what is missing, since the start
  close      disconnect everything and exit
"""

from __future__ import annotations

import array
import asyncio
import base64
import socket
import sys
import time
from typing import Any

import aiohttp
import orjson

TIMED_PREFIX = "cap/"


class Stats:
    """What the whole process saw: latencies of timed deliveries and every violation."""

    def __init__(self) -> None:
        self.latencies_ms = array.array("f")
        self.violations = {"duplicate": 0, "out_of_order": 0, "gap": 0, "stale": 0,
                           "wrong_project": 0, "disconnected": 0}
        self.examples: list[dict] = []
        self.deliveries = 0

    def violation(self, kind: str, **detail: Any) -> None:
        self.violations[kind] += 1
        if len(self.examples) < 10:
            self.examples.append({"kind": kind, **detail})


class Client:
    """One Socket.IO connection and the checks on the stream it receives."""

    def __init__(self, index: int, stats: Stats, waiters: Waiters) -> None:
        self.index = index
        self.stats = stats
        self.waiters = waiters
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.project: str | None = None
        self.base: int | None = None  # the seq the stream starts after
        self.last = 0  # highest seq received
        self.received = 0  # distinct seqs received after base
        self.holes: set[int] = set()  # seqs skipped by a gap, so a late one is told apart
        self.acks: dict[int, asyncio.Future] = {}
        self.next_ack = 0
        self.connected: asyncio.Future | None = None
        self.reader: asyncio.Task | None = None
        self.dropping = False
        self.batch = False  # one project:events per posted batch instead of one packet per event

    async def open(self, http: aiohttp.ClientSession, url: str, token: str, mode: str) -> None:
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = await http.ws_connect(ws_url, max_msg_size=0,
                                        timeout=aiohttp.ClientWSTimeout(ws_close=5))
        self.connected = asyncio.get_running_loop().create_future()
        # The reader takes everything from here on, the Engine.IO OPEN packet included.
        self.reader = asyncio.ensure_future(self._read())
        auth = orjson.dumps({"token": token}).decode() if mode == "vidsync" else ""
        await self.ws.send_str("40" + auth)
        await asyncio.wait_for(self.connected, 60)

    async def subscribe(self, project: str, since_seq: int | None, mode: str) -> int | None:
        self.project = project
        assert self.ws is not None
        if mode == "seed":
            self.base = None
            await self.ws.send_str("42" + orjson.dumps(["subscribe:project", project]).decode())
            return None
        if self.base is None:  # a first subscription; a resubscription keeps checking on
            self.base = self.last = since_seq
        self.next_ack += 1
        ack_id = self.next_ack
        fut = self.acks[ack_id] = asyncio.get_running_loop().create_future()
        request = {"projectId": project, "since_seq": since_seq, "batch": self.batch}
        await self.ws.send_str(f"42{ack_id}" + orjson.dumps(["subscribe:project", request]).decode())
        ack = await asyncio.wait_for(fut, 60)
        if not ack.get("ok"):
            raise RuntimeError(f"subscribe refused: {ack}")
        return ack["last_seq"]

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            self._on_packet(msg.data)
        if not self.dropping and self.project is not None:
            self.stats.violation("disconnected", client=self.index, code=self.ws.close_code)
        if self.connected is not None and not self.connected.done():
            self.connected.set_exception(ConnectionError("closed before Socket.IO CONNECT"))

    def _on_packet(self, text: str) -> None:
        kind = text[:2]
        if kind == "42":
            name, payload = orjson.loads(text[2:])
            if name == "project:event":
                self._on_event(payload, time.time())
            elif name == "project:events":
                now = time.time()
                for event in payload["events"]:
                    self._on_event(event, now)
        elif text == "2":
            asyncio.ensure_future(self.ws.send_str("3"))
        elif kind == "43":
            body = text[2:]
            split = body.index("[")
            fut = self.acks.pop(int(body[:split]), None)
            if fut is not None and not fut.done():
                fut.set_result(orjson.loads(body[split:])[0])
        elif kind in ("40", "44") and self.connected is not None and not self.connected.done():
            if kind == "40":
                self.connected.set_result(None)
            else:
                self.connected.set_exception(RuntimeError(f"connect_error: {text[2:]}"))
        # "0" (open), "41" (server disconnect, followed by the socket closing): nothing to do

    def _on_event(self, event: dict, now: float) -> None:
        stats = self.stats
        if event.get("project_id") != self.project:
            stats.violation("wrong_project", client=self.index, project=event.get("project_id"))
            return
        seq = event["seq"]
        if self.base is None:  # seed protocol: the first event fixes where the stream starts
            self.base = self.last = seq - 1
        if seq <= self.base:
            stats.violation("stale", client=self.index, seq=seq, base=self.base)
            return
        if seq == self.last + 1:
            self.last = seq
        elif seq > self.last:
            stats.violation("gap", client=self.index, seq=seq, after=self.last)
            if len(self.holes) < 100_000:
                self.holes.update(range(self.last + 1, seq))
            self.last = seq
        elif seq in self.holes:
            self.holes.discard(seq)
            stats.violation("out_of_order", client=self.index, seq=seq, after=self.last)
        else:
            stats.violation("duplicate", client=self.index, seq=seq)
            return
        self.received += 1
        stats.deliveries += 1
        path = event["change"]["path"]
        if path.startswith(TIMED_PREFIX):
            stats.latencies_ms.append((now - float(path.rsplit("/", 1)[1])) * 1000)
        self.waiters.progress(self)

    def drop(self) -> None:
        """Shut the TCP connection both ways at once, without a WebSocket close handshake."""
        self.dropping = True
        assert self.ws is not None
        sock = self.ws.get_extra_info("socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Waiters:
    """Answers ``wait`` (and ``reconnect``) once every subscribed client has reached its target:
    one seq for all, or one per project; None means "anything at all" (seed protocol)."""

    def __init__(self) -> None:
        self.targets: dict[str, int] | int | None = None
        self.behind: set[Client] = set()
        self.done: asyncio.Future | None = None
        self.reached_at: dict[int, float] = {}

    def start(self, clients: list[Client], targets: dict[str, int] | int | None) -> asyncio.Future:
        self.targets = targets
        self.reached_at = {}
        self.behind = {c for c in clients if not self._there(c)}
        self.done = asyncio.get_running_loop().create_future()
        if not self.behind:
            self.done.set_result(None)
        return self.done

    def _there(self, c: Client) -> bool:
        target = target_of(self.targets, c)
        if target is None:
            return c.base is not None and c.received > 0
        return c.base is not None and c.last >= target and not c.holes

    def give_up(self, c: Client) -> None:
        self.behind.discard(c)
        if not self.behind and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def progress(self, c: Client) -> None:
        if self.done is None or c not in self.behind or not self._there(c):
            return
        self.behind.discard(c)
        self.reached_at[c.index] = time.monotonic()
        if not self.behind and not self.done.done():
            self.done.set_result(None)


def target_of(targets: dict[str, int] | int | None, c: Client) -> int | None:
    return targets.get(c.project) if isinstance(targets, dict) else targets


class Worker:
    def __init__(self) -> None:
        self.stats = Stats()
        self.waiters = Waiters()
        self.clients: list[Client] = []
        self.http: aiohttp.ClientSession | None = None
        self.cfg: dict = {}

    async def handle(self, cmd: dict) -> dict:
        op = cmd["op"]
        if op == "open":
            return await self.open(cmd)
        if op == "subscribe":
            return await self.subscribe(self.clients[cmd["start"]:cmd["stop"]], cmd["project"],
                                        cmd["since_seq"], cmd["batch"], cmd["concurrency"])
        if op == "wait":
            return await self.wait(cmd["targets"], cmd["timeout"])
        if op == "drop":
            return await self.drop()
        if op == "reconnect":
            return await self.reconnect(cmd["target"], cmd["timeout"])
        if op == "report":
            return self.report(cmd["targets"])
        raise ValueError(f"unknown op {op!r}")

    async def open(self, cmd: dict) -> dict:
        self.cfg = cmd
        # No pool limit: every client keeps its own connection for the whole run.
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        first = cmd["first"]
        self.clients = [Client(first + i, self.stats, self.waiters) for i in range(cmd["count"])]
        started = time.monotonic()
        await bounded(self.clients, cmd["concurrency"], self._open_one)
        return {"connect_s": time.monotonic() - started}

    async def _open_one(self, c: Client) -> None:
        assert self.http is not None
        await c.open(self.http, self.cfg["url"], self.cfg["token"], self.cfg["mode"])

    async def subscribe(self, clients: list[Client], project: str, since_seq: int | None,
                        batch: bool, concurrency: int) -> dict:
        mode = self.cfg["mode"]
        for c in clients:
            c.batch = batch
        await bounded(clients, concurrency, lambda c: c.subscribe(project, since_seq, mode))
        return {"subscribed": len(clients)}

    def subscribed(self) -> list[Client]:
        return [c for c in self.clients if c.project is not None]

    async def wait(self, targets: dict[str, int] | int | None, timeout: float) -> dict:
        done = self.waiters.start(self.subscribed(), targets)
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            return {"ok": False, "behind": len(self.waiters.behind)}
        return {"ok": True}

    async def drop(self) -> dict:
        clients = self.subscribed()
        for c in clients:
            c.drop()
        await asyncio.gather(*(c.reader for c in clients if c.reader is not None))
        return {"dropped": len(clients)}

    async def reconnect(self, target: int, timeout: float) -> dict:
        """All dropped clients reconnect at once and resubscribe after the last seq they saw."""
        clients = self.subscribed()
        done = self.waiters.start(clients, target)
        started = time.monotonic()

        connected_s: list[float] = []

        async def again(c: Client) -> str | None:
            c.dropping = False
            try:
                await self._open_one(c)
                connected_s.append(time.monotonic() - started)
                await c.subscribe(c.project, c.last, self.cfg["mode"])
            except Exception as e:  # noqa: BLE001 - counted and reported; it will not catch up
                self.waiters.give_up(c)
                return f"{type(e).__name__}: {e}"
            return None

        errors = [e for e in await asyncio.gather(*(again(c) for c in clients)) if e]
        ok = True
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            ok = False
        return {"ok": ok and not errors, "errors": errors[:5], "error_count": len(errors),
                "behind": len(self.waiters.behind), "connected_s": connected_s,
                "caught_up_s": [t - started for t in self.waiters.reached_at.values()]}

    def report(self, targets: dict[str, int] | int | None) -> dict:
        missing = 0
        incomplete = 0
        for c in self.subscribed():
            target = target_of(targets, c)
            if target is None:
                continue
            if c.base is None:  # seed protocol, nothing ever received
                incomplete += 1
                continue
            lacking = (target - c.base) - c.received
            if lacking > 0:
                missing += lacking
                incomplete += 1
        s = self.stats
        out = {"deliveries": s.deliveries, "missing": missing, "incomplete_clients": incomplete,
               "violations": dict(s.violations), "examples": s.examples,
               "latencies_ms": base64.b64encode(s.latencies_ms.tobytes()).decode(),
               "clients": len(self.clients), "subscribed": len(self.subscribed())}
        s.latencies_ms = array.array("f")
        s.deliveries = 0
        return out

    async def close(self) -> None:
        for c in self.clients:
            if c.ws is not None:
                c.dropping = True
                c.drop()
        if self.http is not None:
            await self.http.close()


async def bounded(items: list, concurrency: int, fn) -> None:
    """Run ``fn`` on every item, at most ``concurrency`` at a time; the first error is raised."""
    queue = list(reversed(items))

    async def lane() -> None:
        while queue:
            await fn(queue.pop())

    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, len(items))))))


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker()

    def reply(obj: dict) -> None:
        sys.stdout.write(orjson.dumps(obj).decode() + "\n")
        sys.stdout.flush()

    async def run(cmd: dict) -> None:
        try:
            out = await worker.handle(cmd)
            reply({"id": cmd["id"], "ok": True, **out})
        except Exception as e:  # noqa: BLE001 - reported to the driver, which stops the run
            reply({"id": cmd["id"], "ok": False, "error": f"{type(e).__name__}: {e}"})

    tasks = set()
    while line := await reader.readline():
        cmd = orjson.loads(line)
        if cmd["op"] == "close":
            break
        task = asyncio.ensure_future(run(cmd))  # a wait may run while posts need other answers
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await worker.close()


if __name__ == "__main__":
    asyncio.run(main())
