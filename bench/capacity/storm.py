"""Reconnect storm: subscribers drop at once, fall behind, and all come back at the same moment.

``--storm-subscribers`` clients (ours, SQLite) subscribe to one project and are live. Every client's
TCP connection is then shut at once (no WebSocket close handshake, as when a proxy or a network
link goes), ``--behind`` changes are posted while they are away, and every client reconnects
at once, without back-off or jitter (the worst case), logs in, and resubscribes with
``since_seq`` = the last seq it saw. The clock runs from that moment until the last client has
every missed event; each client checks it got each one exactly once, in order.

Server CPU is what its process used over that time. The Node reference is not run: it keeps no
log, so a client that drops cannot catch up there.

    .venv/bin/python bench/capacity/storm.py [--scale 0.1] [--storm-subscribers 5000] [--behind 100]
"""

from __future__ import annotations

import argparse
import asyncio

from api import Api, change, timed_path
from procs import CpuWindow, Stack, listen_overflows, load_average, log, profiled
from report import ms, scaled, standalone, summary, table
from swarm import Swarm

WAIT_S = 300.0


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storm-subscribers", type=int, default=5000)
    p.add_argument("--behind", type=int, default=100, help="changes posted while they are away")


async def connections_gauge(api: Api) -> int:
    """Open Socket.IO connections, from /metrics (no token is configured on the bench server)."""
    async with api.http.get(api.url + "/metrics") as r:
        text = await r.text()
    return round(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("vidsync_connections{")))


async def run(args: argparse.Namespace) -> dict:
    n = scaled(args.storm_subscribers, args.scale)
    out: dict = {"benchmark": "storm", "subscribers": n, "behind": args.behind}
    async with Stack() as stack:
        server = await stack.vidsync()
        api = Api(server.url, connections=4)
        stack.push_async_callback(api.close)
        await api.register()
        project = await api.project()
        swarm = Swarm(n, args.procs)
        await swarm.start()
        stack.push_async_callback(swarm.close)
        log(f"storm: {n} subscribers")
        await swarm.open(server.url, api.token)
        await swarm.subscribe(project, await api.last_seq(project), upto=n)
        # One change everyone receives live: all are subscribed and caught up.
        last = (await api.post(project, [change(timed_path("warm"))]))["last_seq"]
        if not await swarm.wait(last, 60):
            raise RuntimeError("subscribers did not receive the warm-up change")

        log(f"storm: dropping {n} connections at once")
        await swarm.drop()
        for _ in range(300):  # the server notices within milliseconds; give it 30 s
            if await connections_gauge(api) == 0:
                break
            await asyncio.sleep(0.1)
        out["server_saw_drop"] = await connections_gauge(api) == 0
        for i in range(args.behind):
            last = (await api.post(project, [change(f"away/{i}")]))["last_seq"]
        await swarm.report(None)  # count replayed deliveries alone

        log(f"storm: {n} reconnecting at once, {args.behind} events behind ({load_average()})")
        overflows = listen_overflows()
        with profiled(server.pid, "storm"), CpuWindow((server.pid,)) as cpu, \
                CpuWindow(tuple(swarm.pids())) as lg_cpu:
            back = await swarm.reconnect(last, WAIT_S)
        out["listen_overflows"] = listen_overflows() - overflows
        tally = await swarm.report(last)
        caught = [t * 1000 for t in back["caught_up_s"]]
        connected = [t * 1000 for t in back["connected_s"]]
        out.update({
            "all_caught_up": back["ok"], "behind_at_end": back["behind"],
            "reconnect_errors": back["error_count"], "reconnect_error_examples": back["errors"],
            "all_caught_up_ms": max(caught) if caught else None,
            "caught_up_ms": summary(caught), "connected_ms": summary(connected),
            "server_cpu_s": cpu.cpu_s,
            "server_cores": cpu.cores, "loadgen_cores": lg_cpu.cores,
            "machine_cores": cpu.machine_cores, "replayed": tally.deliveries,
            "expected_replayed": n * args.behind, "violations": tally.violations,
            "missing": tally.missing, "examples": tally.examples,
            "load_average": load_average()})
    out["passed"] = (out["all_caught_up"] and out["replayed"] == out["expected_replayed"]
                     and tally.violation_total == 0)
    out["violation_total"] = tally.violation_total
    return out


def render(r: dict) -> str:
    rows = [("subscribers", "behind", "all caught up after", "per client p50", "p99",
             "logged in again p50/p99/max",
             "server CPU", "server cores", "CPU loadgen/machine", "replayed+checked",
             "violations", "reconnect errors", "listen overflows", "load avg"),
            (r["subscribers"], r["behind"],
             ms(r["all_caught_up_ms"]) if r["all_caught_up"] else "not all (timed out)",
             ms(r["caught_up_ms"]["p50"]), ms(r["caught_up_ms"]["p99"]),
             "/".join(ms(r["connected_ms"][k]) for k in ("p50", "p99", "max")),
             f"{r['server_cpu_s']:.1f} s", f"{r['server_cores']:.2f}",
             f"{r['loadgen_cores']:.2f}/{r['machine_cores']:.2f}",
             f"{r['replayed']}/{r['expected_replayed']}", r["violation_total"],
             r["reconnect_errors"], r["listen_overflows"], r["load_average"])]
    return table("Reconnect storm: all drop, fall behind, reconnect at once (SQLite)", rows)


if __name__ == "__main__":
    standalone("capacity-storm", __doc__, add_args, run, render)
