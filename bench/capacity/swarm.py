"""The driver's handle on the subscriber swarm: several ``swarm_worker.py`` processes.

Clients are numbered 0..N-1 across the processes (client i lives in process i % procs, so any
prefix of the numbering is spread evenly). Every call fans one command out to the processes
concerned and gathers their replies.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import orjson

WORKER = Path(__file__).resolve().parent / "swarm_worker.py"


class SwarmError(RuntimeError):
    pass


@dataclass
class Tally:
    """Merged ``report`` replies: the checks of every delivery, and the timed latencies."""

    deliveries: int = 0
    missing: int = 0
    incomplete_clients: int = 0
    violations: dict[str, int] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)
    latencies_ms: array = field(default_factory=lambda: array("f"))

    @property
    def violation_total(self) -> int:
        return sum(self.violations.values()) + self.missing

    def add(self, r: dict) -> None:
        self.deliveries += r["deliveries"]
        self.missing += r["missing"]
        self.incomplete_clients += r["incomplete_clients"]
        for k, v in r["violations"].items():
            self.violations[k] = self.violations.get(k, 0) + v
        self.examples.extend(r["examples"][: 10 - len(self.examples)])
        self.latencies_ms.frombytes(base64.b64decode(r["latencies_ms"]))


class WorkerProc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            reply = orjson.loads(line)
            fut = self.pending.pop(reply["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(reply)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(SwarmError(f"swarm process {self.proc.pid} exited"))

    async def call(self, op: str, **args: object) -> dict:
        assert self.proc.stdin is not None
        cmd_id = next(self.ids)
        fut = self.pending[cmd_id] = asyncio.get_running_loop().create_future()
        self.proc.stdin.write(orjson.dumps({"id": cmd_id, "op": op, **args}) + b"\n")
        await self.proc.stdin.drain()
        reply = await fut
        if not reply["ok"] and "error" in reply:
            raise SwarmError(f"swarm process {self.proc.pid}, {op}: {reply['error']}")
        return reply


class Swarm:
    """``clients`` light Socket.IO clients in ``procs`` processes."""

    def __init__(self, clients: int, procs: int) -> None:
        self.clients = clients
        self.nprocs = max(1, min(procs, clients))
        self.workers: list[WorkerProc] = []

    def _count(self, p: int, n: int) -> int:
        """How many of the first ``n`` clients live in process ``p``."""
        return len(range(p, n, self.nprocs))

    async def start(self) -> None:
        for _ in range(self.nprocs):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, limit=2**28)
            self.workers.append(WorkerProc(proc))

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    async def _all(self, op: str, per_worker: list[dict] | None = None, **args: object) -> list[dict]:
        return await asyncio.gather(*(
            w.call(op, **args, **(per_worker[p] if per_worker else {}))
            for p, w in enumerate(self.workers)))

    async def open(self, url: str | list[str], token: str, mode: str = "vidsync",
                   concurrency: int = 25) -> float:
        """Connect every client (``url`` may list one URL per process). Returns the seconds it
        took."""
        urls = [url] * self.nprocs if isinstance(url, str) else url
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._all("open", token=token, mode=mode, concurrency=concurrency,
                        per_worker=[{"url": urls[p], "first": p,
                                     "count": self._count(p, self.clients)}
                                    for p in range(self.nprocs)])
        return loop.time() - started

    async def subscribe(self, project: str, since_seq: int | None, upto: int, start: int = 0,
                        batch: bool = False, concurrency: int = 50) -> None:
        """Subscribe clients [start, upto)."""
        await self._all("subscribe", project=project, since_seq=since_seq, batch=batch,
                        concurrency=concurrency, per_worker=[
            {"start": self._count(p, start), "stop": self._count(p, upto)}
            for p in range(self.nprocs)])

    async def wait(self, targets: dict[str, int] | int | None, timeout: float) -> bool:
        """Until every subscribed client has every seq up to its target (see swarm_worker)."""
        replies = await self._all("wait", targets=targets, timeout=timeout)
        return all(r["ok"] for r in replies)

    async def drop(self) -> None:
        await self._all("drop")

    async def reconnect(self, target: int, timeout: float) -> dict:
        replies = await self._all("reconnect", target=target, timeout=timeout)
        return {"ok": all(r["ok"] for r in replies),
                "behind": sum(r["behind"] for r in replies),
                "error_count": sum(r["error_count"] for r in replies),
                "errors": [e for r in replies for e in r["errors"]][:5],
                "connected_s": sorted(t for r in replies for t in r["connected_s"]),
                "caught_up_s": sorted(t for r in replies for t in r["caught_up_s"])}

    async def reports(self, targets: dict[str, int] | int | None) -> list[Tally]:
        """One tally per process (their clients may differ, e.g. by node)."""
        tallies = []
        for r in await self._all("report", targets=targets):
            tallies.append(Tally())
            tallies[-1].add(r)
        return tallies

    async def report(self, targets: dict[str, int] | int | None) -> Tally:
        tally = Tally()
        for r in await self._all("report", targets=targets):
            tally.add(r)
        return tally

    async def close(self) -> None:
        for w in self.workers:
            if w.proc.returncode is None and w.proc.stdin is not None:
                try:
                    w.proc.stdin.write(b'{"id": -1, "op": "close"}\n')
                    await w.proc.stdin.drain()
                except (ConnectionError, RuntimeError):
                    pass
        for w in self.workers:
            try:
                await asyncio.wait_for(w.proc.wait(), 20)
            except TimeoutError:
                w.proc.kill()
                await w.proc.wait()
            w.reader.cancel()
