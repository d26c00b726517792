"""Two nodes with Redis: fan-out latency to a subscriber on the other node than the poster.

Starts a private redis-server, a scratch PostgreSQL database and two ``vidsync serve`` nodes
sharing both (and one content directory). ``--two-node-subscribers`` clients subscribe to one project,
half on each node; changes are posted to node A one at a time (each waits until every
subscriber has it), so every delivery is timed either on the poster's node (A, through the
local hub) or on the other node (B: A commits, publishes on Redis, B's hub delivers).

The Node reference is not run: its design has one process and no backplane.

    .venv/bin/python bench/capacity/two_nodes.py [--scale 0.1] [--two-node-subscribers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from api import Api, change, timed_path
from procs import CpuWindow, Stack, load_average, log
from report import ms, scaled, standalone, summary, table
from swarm import Swarm, Tally

WAIT_S = 60.0
PAUSE_S = 0.02


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--two-node-subscribers", type=int, default=1000)
    p.add_argument("--two-node-events", type=int, default=200)


def merged(tallies: list[Tally]) -> Tally:
    out = Tally()
    for t in tallies:
        out.deliveries += t.deliveries
        out.missing += t.missing
        out.latencies_ms.extend(t.latencies_ms)
        for k, v in t.violations.items():
            out.violations[k] = out.violations.get(k, 0) + v
        out.examples.extend(t.examples)
    return out


async def run(args: argparse.Namespace) -> dict:
    n = scaled(args.two_node_subscribers, args.scale, least=2)
    events = scaled(args.two_node_events, min(1.0, args.scale * 4), least=20)
    procs = max(2, args.procs - args.procs % 2)  # even: processes alternate between the nodes
    out: dict = {"benchmark": "two-nodes", "subscribers": n, "events": events}
    async with Stack() as stack:
        redis = await stack.redis()
        database = await stack.postgres(args.postgres)
        blobs = stack.workdir / "blobs"
        a = await stack.vidsync("node-a", database=database, redis=redis, blob_dir=blobs)
        b = await stack.vidsync("node-b", database=database, redis=redis, blob_dir=blobs)
        api = Api(a.url, connections=4)
        stack.push_async_callback(api.close)
        await api.register()
        project = await api.project()
        swarm = Swarm(n, procs)
        await swarm.start()
        stack.push_async_callback(swarm.close)
        urls = [a.url if p % 2 == 0 else b.url for p in range(procs)]
        log(f"two nodes: {n} subscribers, half on each")
        await swarm.open(urls, api.token)
        last = await api.last_seq(project)
        await swarm.subscribe(project, last, upto=n)
        answers = []
        log(f"two nodes: posting {events} changes to node A ({load_average()})")
        with CpuWindow((a.pid,)) as cpu_a, CpuWindow((b.pid,)) as cpu_b:
            for i in range(events):
                started = time.perf_counter()
                last = (await api.post(project, [change(timed_path(i))]))["last_seq"]
                answers.append((time.perf_counter() - started) * 1000)
                if not await swarm.wait(last, WAIT_S):
                    break
                await asyncio.sleep(PAUSE_S)
        tallies = await swarm.reports(last)
        same = merged([t for p, t in enumerate(tallies) if p % 2 == 0])
        cross = merged([t for p, t in enumerate(tallies) if p % 2 == 1])
        total = same.violation_total + cross.violation_total
        out.update({
            "same_node_ms": summary(same.latencies_ms), "cross_node_ms": summary(cross.latencies_ms),
            "answer_ms": summary(answers), "posted": len(answers),
            "subscribers_a": sum(len(range(p, n, procs)) for p in range(0, procs, 2)),
            "timed_deliveries": len(same.latencies_ms) + len(cross.latencies_ms),
            "expected_timed": len(answers) * n, "violation_total": total,
            "violations": {"node_a": same.violations, "node_b": cross.violations},
            "examples": (same.examples + cross.examples)[:10],
            "node_a_cores": cpu_a.cores, "node_b_cores": cpu_b.cores,
            "machine_cores": cpu_a.machine_cores, "load_average": load_average()})
    out["passed"] = total == 0 and out["timed_deliveries"] == out["expected_timed"]
    return out


def render(r: dict) -> str:
    rows = [("subscriber on", "subscribers", "p50", "p99", "max", "deliveries checked",
             "violations")]
    per_node = r["subscribers_a"]
    for label, key in (("node A (poster's)", "same_node_ms"), ("node B (other)", "cross_node_ms")):
        lat = r[key]
        rows.append((label, per_node if key == "same_node_ms" else r["subscribers"] - per_node,
                     ms(lat["p50"]), ms(lat["p99"]), ms(lat["max"]), lat["n"],
                     sum(r["violations"]["node_a" if key == "same_node_ms" else "node_b"].values())))
    foot = (f"posted {r['posted']} changes to node A, one at a time; post answered p50 "
            f"{ms(r['answer_ms']['p50'])}; CPU node A {r['node_a_cores']:.2f}, node B "
            f"{r['node_b_cores']:.2f}, machine {r['machine_cores']:.2f} cores; "
            f"load avg {r['load_average']}; all deliveries {r['timed_deliveries']}/"
            f"{r['expected_timed']}, missing/violations {r['violation_total']}")
    return table("Two nodes (PostgreSQL + Redis): latency = post sent to node A -> event "
                 "received", rows) + "\n" + foot


if __name__ == "__main__":
    standalone("capacity-two-nodes", __doc__, add_args, run, render)
