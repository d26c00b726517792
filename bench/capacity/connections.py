"""10,000 Socket.IO connections on one node: memory per connection, and fan-out to 1k/5k/10k.

For each server (ours on SQLite, and the Node socket.io reference) this opens ``--connections``
WebSocket clients (logged in, not yet subscribed), then subscribes them to one project in
stages (``--stages``, cumulative) and at each stage posts ``--fanout-events`` changes one at a time:
each post waits until every subscriber has it, so the figures are the latency of one event
reaching N subscribers on an otherwise idle server, not of a queue.

Per connection memory is (server RSS with every client connected and subscribed − RSS before
the first connection) / connections.

    .venv/bin/python bench/capacity/connections.py [--scale 0.1] [--servers vidsync,node-ref]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from api import Api, change, timed_path
from procs import CpuWindow, Stack, load_average, log, profiled, rss_bytes
from report import kib, mib, ms, scaled, standalone, summary, table
from swarm import Swarm

from vidsync.testing import Process

SERVERS = ("vidsync", "node-ref")
WAIT_S = 60.0  # one event reaching every subscriber; past this the run is reported as failed
PAUSE_S = 0.05  # between events, so that one event's tail does not overlap the next


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--stages", default="1000,5000,10000", help="subscribers, cumulative")
    p.add_argument("--fanout-events", type=int, default=40, help="changes posted at each stage")
    p.add_argument("--servers", default=",".join(SERVERS), help="for connections: "
                   f"{', '.join(SERVERS)}")


async def settle_rss(server: Process, seconds: float = 2.0) -> int:
    """RSS once it stopped moving for a moment (allocations after a burst land late)."""
    await asyncio.sleep(seconds)
    return rss_bytes(server.pid)


async def prime_seed(api: Api, project: str, swarm: Swarm) -> int:
    """The seed protocol has no subscribe ack: post unmeasured changes until every subscriber
    has received one; from then on each stream must be complete. Returns the last seq."""
    waiting = asyncio.ensure_future(swarm.wait(None, WAIT_S))
    last = 0
    n = 0
    while not waiting.done():
        last = (await api.post(project, [change(f"probe/{uuid.uuid4().hex}")]))["last_seq"]
        n += 1
        await asyncio.wait([waiting], timeout=0.2)
    if not waiting.result():
        raise RuntimeError("seed subscribers never received a probe")
    await swarm.wait(last, WAIT_S)
    return last


async def run_server(kind: str, args: argparse.Namespace) -> dict:
    n = scaled(args.connections, args.scale)
    stages = sorted({min(n, scaled(int(s), args.scale)) for s in args.stages.split(",")})
    events = scaled(args.fanout_events, min(1.0, args.scale * 4), least=10)
    out: dict = {"server": kind, "connections": n, "events_per_stage": events, "stages": []}
    async with Stack() as stack:
        server = await (stack.vidsync() if kind == "vidsync" else stack.node_ref())
        api = Api(server.url, connections=4)
        stack.push_async_callback(api.close)
        if kind == "vidsync":
            await api.register()
            project = await api.project()
        else:
            project = f"bench-{uuid.uuid4().hex[:8]}"
        out["rss_idle"] = await settle_rss(server, 1.0)
        swarm = Swarm(n, args.procs)
        await swarm.start()
        stack.push_async_callback(swarm.close)
        mode = "vidsync" if kind == "vidsync" else "seed"
        log(f"{kind}: opening {n} connections")
        out["connect_s"] = await swarm.open(server.url, api.token, mode)
        out["rss_connected"] = await settle_rss(server)
        subscribed = 0
        last_seq = await api.last_seq(project) if kind == "vidsync" else 0
        for stage in stages:
            log(f"{kind}: {stage} subscribers ({load_average()})")
            await swarm.subscribe(project, last_seq, upto=stage, start=subscribed)
            subscribed = stage
            if kind != "vidsync":
                last_seq = await prime_seed(api, project, swarm)
            out["rss_subscribed"] = await settle_rss(server)
            await swarm.report(None)  # drop anything timed before this stage
            answers = []
            timeouts = 0
            with profiled(server.pid, f"fanout-{kind}-{stage}"), CpuWindow((server.pid,)) as cpu, \
                    CpuWindow(tuple(swarm.pids())) as lg_cpu:
                for i in range(events):
                    started = time.perf_counter()
                    last_seq = (await api.post(project, [change(timed_path(i))]))["last_seq"]
                    answers.append((time.perf_counter() - started) * 1000)
                    if not await swarm.wait(last_seq, WAIT_S):
                        timeouts += 1
                        break
                    await asyncio.sleep(PAUSE_S)
            tally = await swarm.report(last_seq)
            out["stages"].append({
                "subscribers": stage, "latency_ms": summary(tally.latencies_ms),
                "answer_ms": summary(answers), "timed_deliveries": len(tally.latencies_ms),
                "expected_timed": len(answers) * stage, "violations": tally.violations,
                "missing": tally.missing, "violation_total": tally.violation_total,
                "examples": tally.examples, "timeouts": timeouts,
                "server_cores": cpu.cores, "loadgen_cores": lg_cpu.cores,
                "machine_cores": cpu.machine_cores, "load_average": load_average()})
        out["rss_after"] = await settle_rss(server, 1.0)
    out["rss_per_connection"] = (out["rss_subscribed"] - out["rss_idle"]) / n
    out["rss_per_connection_connected_only"] = (out["rss_connected"] - out["rss_idle"]) / n
    return out


async def run(args: argparse.Namespace) -> dict:
    runs = []
    for kind in args.servers.split(","):
        if kind not in SERVERS:
            raise SystemExit(f"unknown server {kind!r}; choose from {', '.join(SERVERS)}")
        runs.append(await run_server(kind, args))
    passed = all(s["violation_total"] == 0 and s["timeouts"] == 0
                 and s["timed_deliveries"] == s["expected_timed"]
                 for r in runs for s in r["stages"])
    return {"benchmark": "connections", "runs": runs, "passed": passed}


def render(result: dict) -> str:
    mem = [("server", "connections", "connect time", "RSS idle", "RSS all subscribed",
            "RSS/connection", "(connected only)", "RSS after fan-out")]
    fan = [("server", "subscribers", "p50", "p99", "max", "post answered p50",
            "deliveries checked", "violations", "CPU server/loadgen/machine", "load avg")]
    for r in result["runs"]:
        mem.append((r["server"], r["connections"], f"{r['connect_s']:.1f} s", mib(r["rss_idle"]),
                    mib(r["rss_subscribed"]), kib(r["rss_per_connection"]),
                    kib(r["rss_per_connection_connected_only"]), mib(r["rss_after"])))
        for s in r["stages"]:
            lat = s["latency_ms"]
            fan.append((r["server"], s["subscribers"], ms(lat["p50"]), ms(lat["p99"]),
                        ms(lat["max"]), ms(s["answer_ms"]["p50"]),
                        f"{s['timed_deliveries']}/{s['expected_timed']}",
                        s["violation_total"] + s["timeouts"],
                        f"{s['server_cores']:.2f}/{s['loadgen_cores']:.2f}/{s['machine_cores']:.2f}",
                        s["load_average"]))
    return "\n\n".join([table("Connections: server memory", mem),
                        table("Fan-out: one event at a time to N subscribers of one project "
                              "(latency = post sent -> event received)", fan)])


if __name__ == "__main__":
    standalone("capacity-connections", __doc__, add_args, run, render)
