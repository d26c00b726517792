"""Two-node fan-out through the Redis backplane: what crossing nodes costs, and that it stays exact.

Starts, all on 127.0.0.1: a private redis-server, a scratch PostgreSQL database on the machine's
server, and ``--nodes`` vidsync nodes sharing both. ``--subscribers`` Socket.IO clients (WebSocket,
in ``--procs`` processes) subscribe to one project, spread over the nodes; one change is posted
every ``--interval-ms``, to the nodes in turn. Each change's path carries its send time and the
node it was posted to, so every delivery is timed and classed as same-node or cross-node; every
client checks its stream (seq order, no duplicate, no gap, nothing missing).

    .venv/bin/python bench/cluster_fanout.py [--nodes 2] [--subscribers 200] [--events 1000]
                                             [--interval-ms 10] [--procs 2]

``--nodes 1`` runs the same load on one node (still on PostgreSQL, no Redis) as the baseline.
Prints a table and writes the figures to ``bench/results/cluster-fanout-<time>.json``. Everything
started here is stopped here, and the scratch database is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from vidsync.testing import Process, RedisProcess, ServerProcess, cpu_seconds

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
CONTENT = b"vidsync cluster fan-out bench\n"
CONTENT_HASH = hashlib.sha256(CONTENT).hexdigest()


def log(message: str) -> None:
    print(f"[cluster-fanout] {message}", file=sys.stderr, flush=True)




def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- subscriber processes -----------------------------------------------------------------


def subscriber_proc(urls: list[str], indices: list[int], token: str, project_id: str,
                    ready: mp.Queue, posted: mp.Event, total: mp.Value, results: mp.Queue,
                    drain_s: float) -> None:
    """Run some clients: client i connects to node ``i % len(urls)``. Reports, per client, the
    latencies (ms) of same-node and cross-node deliveries and any violation."""
    import socketio  # imported here: each process has its own

    async def client(i: int, posting_done: asyncio.Future) -> dict:
        node = i % len(urls)
        out = {"same": [], "cross": [], "violations": [], "last": 0, "target": float("inf")}
        done = asyncio.Event()
        sio = socketio.AsyncClient(reconnection=False)

        def on_event(event: dict) -> None:
            now = time.time()
            seq = event["seq"]
            if seq != out["last"] + 1:
                out["violations"].append(("duplicate" if seq <= out["last"] else "gap", seq))
            out["last"] = max(out["last"], seq)
            _, _, origin, sent = event["change"]["path"].split("/")
            out["same" if int(origin) == node else "cross"].append((now - float(sent)) * 1000)
            if out["last"] >= out["target"]:
                done.set()

        sio.on("project:event", on_event)
        await sio.connect(urls[node], auth={"token": token}, transports=["websocket"],
                          wait_timeout=30)
        ack = await sio.call("subscribe:project", {"projectId": project_id, "since_seq": 0},
                             timeout=30)
        assert ack["ok"], ack
        ready.put(i)
        await posting_done
        out["target"] = total.value
        if out["last"] < out["target"]:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), drain_s)
        if out["last"] < out["target"]:
            out["violations"].append(("missing", out["target"] - out["last"]))
        await sio.disconnect()
        del out["target"]
        return out

    async def run() -> list[dict]:
        posting_done = asyncio.ensure_future(asyncio.to_thread(posted.wait))
        return await asyncio.gather(*(client(i, posting_done) for i in indices))

    results.put(asyncio.run(run()))


# ---- the run ------------------------------------------------------------------------------


async def post_all(urls: list[str], token: str, project_id: str, events: int,
                   interval_s: float) -> tuple[int, list[float]]:
    """Post one change every interval_s (open loop), to the nodes in turn. Returns the last seq
    and the answer times (ms)."""
    answers: list[float] = []
    last_seq = 0
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30, headers=headers,
                                 limits=httpx.Limits(max_connections=32)) as http:
        async def post(i: int) -> None:
            nonlocal last_seq
            node = i % len(urls)
            sent = time.time()
            change = {"path": f"fanout/{i}/{node}/{sent:.6f}", "op": "create",
                      "hash": CONTENT_HASH, "size": len(CONTENT), "mtime": None}
            r = await http.post(f"{urls[node]}/api/projects/{project_id}/files/update",
                                json={"changes": [change]})
            r.raise_for_status()
            answers.append((time.time() - sent) * 1000)
            last_seq = max(last_seq, r.json()["last_seq"])

        start = time.monotonic()
        tasks = []
        for i in range(events):
            await asyncio.sleep(max(0.0, start + i * interval_s - time.monotonic()))
            tasks.append(asyncio.ensure_future(post(i)))
        await asyncio.gather(*tasks)
    return last_seq, answers


def setup(url: str) -> tuple[str, str]:
    """A user, a project, and the one file's content every change names."""
    with httpx.Client(base_url=url, timeout=30) as http:
        token = http.post("/api/auth/register", json={
            "email": f"bench-{uuid.uuid4().hex[:10]}@example.com",
            "password": uuid.uuid4().hex}).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        pid = http.post("/api/projects", json={"name": "cluster bench"}, headers=auth
                        ).json()["project"]["id"]
        http.put(f"/api/projects/{pid}/blocks/{CONTENT_HASH}", content=CONTENT,
                 headers={**auth, "Content-Type": "application/octet-stream"}).raise_for_status()
        http.post(f"/api/projects/{pid}/manifests", headers=auth, json={
            "hash": CONTENT_HASH, "size": len(CONTENT),
            "blocks": [{"hash": CONTENT_HASH, "size": len(CONTENT)}]}).raise_for_status()
    return token, pid


def run(args: argparse.Namespace, workdir: Path) -> dict:
    procs: list[Process] = []  # stopped in reverse order: the nodes, then Redis
    db_name = "vidsync_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    database = args.postgres.rsplit("/", 1)[0] + "/" + db_name
    try:
        extra: list[str] = []
        if args.nodes > 1:
            redis = RedisProcess(workdir)
            procs.append(redis)
            extra = ["--redis", redis.start().url]
        nodes = [ServerProcess(workdir / f"node{n}", ["--blob-dir", str(workdir / "blobs"), *extra],
                               database, quiet=True, ready_path="/readyz",
                               log_path=workdir / f"node{n}.log") for n in range(args.nodes)]
        procs += nodes
        for node in nodes:  # all start at once, then each is waited for
            node.spawn()
        for node in nodes:
            node.wait_ready()
        urls = [node.url for node in nodes]
        token, pid = setup(urls[0])

        ctx = mp.get_context("spawn")
        ready, results, total, posted = ctx.Queue(), ctx.Queue(), ctx.Value("q", 0), ctx.Event()
        workers = [ctx.Process(target=subscriber_proc, args=(
            urls, list(range(p, args.subscribers, args.procs)), token, pid, ready, posted, total,
            results, args.drain_timeout_s)) for p in range(args.procs)]
        for w in workers:
            w.start()
        for _ in range(args.subscribers):
            ready.get(timeout=120)
        log(f"{args.subscribers} subscribers on {args.nodes} node(s); posting {args.events}")
        cpu_before = [cpu_seconds(n.pid) for n in nodes]
        started = time.monotonic()
        last_seq, answers = asyncio.run(post_all(urls, token, pid, args.events,
                                                 args.interval_ms / 1000))
        total.value = last_seq
        posted.set()
        clients = [c for _ in workers for c in results.get(timeout=args.drain_timeout_s + 60)]
        wall = time.monotonic() - started
        node_cores = [(cpu_seconds(n.pid) - b) / wall for n, b in zip(nodes, cpu_before, strict=True)]
        for w in workers:
            w.join()
    finally:
        for p in reversed(procs):
            p.stop()
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    same = [x for c in clients for x in c["same"]]
    cross = [x for c in clients for x in c["cross"]]
    violations = [v for c in clients for v in c["violations"]]
    return {
        "nodes": args.nodes, "subscribers": args.subscribers, "events": last_seq,
        "interval_ms": args.interval_ms,
        "deliveries": len(same) + len(cross), "expected_deliveries": last_seq * args.subscribers,
        "violations": violations[:20], "violation_total": len(violations),
        "latency_ms": {kind: {"p50": percentile(xs, 0.5), "p99": percentile(xs, 0.99),
                              "max": max(xs) if xs else None, "n": len(xs)}
                       for kind, xs in (("same_node", same), ("cross_node", cross))},
        "post_answer_ms": {"p50": percentile(answers, 0.5), "p99": percentile(answers, 0.99)},
        "node_cpu_cores": [round(c, 2) for c in node_cores],
        "deliveries_per_s": round((len(same) + len(cross)) / wall),
    }


def print_report(r: dict) -> None:
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f} ms"

    print(f"nodes={r['nodes']} subscribers={r['subscribers']} events={r['events']} "
          f"interval={r['interval_ms']} ms")
    print(f"deliveries {r['deliveries']}/{r['expected_deliveries']}, "
          f"violations {r['violation_total']}, {r['deliveries_per_s']} deliveries/s, "
          f"node CPU {r['node_cpu_cores']} cores, post answered p50 {ms(r['post_answer_ms']['p50'])}")
    for kind, lat in r["latency_ms"].items():
        if lat["n"]:
            print(f"  {kind:<10} p50 {ms(lat['p50'])}  p99 {ms(lat['p99'])}  max {ms(lat['max'])}"
                  f"  ({lat['n']} deliveries)")
    for v in r["violations"]:
        print(f"  violation: {v}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2, choices=(1, 2, 3, 4))
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=10)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--drain-timeout-s", type=float, default=60)
    parser.add_argument("--postgres", default=os.environ.get(
        "VIDSYNC_TEST_DATABASE", "postgresql://127.0.0.1:5432/test"),
        help="a PostgreSQL server and database to create the scratch database from")
    args = parser.parse_args()
    if args.nodes > 1 and shutil.which("redis-server") is None:
        sys.exit("redis-server is needed for several nodes")
    with tempfile.TemporaryDirectory(prefix="vidsync-cluster-bench-") as tmp:
        result = run(args, Path(tmp))
    print_report(result)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"cluster-fanout-{stamp}.json"
    path.write_text(json.dumps({"started_at": stamp, "cpus": os.cpu_count(), **result}, indent=1))
    log(f"wrote {path.relative_to(BENCH.parent)}")
    if result["violation_total"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
