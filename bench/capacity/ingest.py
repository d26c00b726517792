"""Ingest: events appended and acknowledged per second through ``files/update``.

For each backend (SQLite in a fresh data dir; PostgreSQL in a scratch database on 127.0.0.1)
and each batch size (``--batches``, 1 to 1000 changes), ``--posters`` owners post batches of
new files to their own project as fast as the server answers (each waits for its answer before
posting again, as the owner's agent does) for ``--seconds``. An event counts once its post is
answered 200.

Each answer is checked (one consecutive seq per change, after the previous answer's), and each
project has one live subscriber (``batch: true``) that must receive every appended event once,
in order: the figure is for events that really went into the log and out to the watchers.

    .venv/bin/python bench/capacity/ingest.py [--scale 0.1] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time

from api import Api, change
from procs import CpuWindow, Stack, load_average, log, profiled
from report import ms, standalone, summary, table
from swarm import Swarm

BACKENDS = ("sqlite", "postgres")
WAIT_S = 60.0


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--batches", default="1,100,1000", help="changes per post")
    p.add_argument("--posters", type=int, default=4, help="concurrent owners, one project each")
    p.add_argument("--seconds", type=float, default=10.0, help="posting time per batch size")


async def post_loop(api: Api, project: str, batch: int, until: float, names: itertools.count,
                    answers: list[float], errors: list[str]) -> tuple[int, int]:
    """One owner posting back to back until ``until``. Returns (events acked, last seq)."""
    acked = 0
    last = await api.last_seq(project)
    while time.monotonic() < until:
        changes = [change(f"ingest/{next(names)}") for _ in range(batch)]
        started = time.perf_counter()
        body = await api.post(project, changes)
        answers.append((time.perf_counter() - started) * 1000)
        seqs = [r["seq"] for r in body["results"]]
        if seqs != list(range(last + 1, last + 1 + batch)) or body["last_seq"] != seqs[-1]:
            errors.append(f"{project}: expected seqs {last + 1}..{last + batch}, "
                          f"got {seqs[:3]}..{seqs[-1:]} last_seq {body['last_seq']}")
        last = body["last_seq"]
        acked += batch
    return acked, last


async def run_backend(backend: str, args: argparse.Namespace) -> list[dict]:
    rows = []
    async with Stack() as stack:
        database = await stack.postgres(args.postgres) if backend == "postgres" else None
        server = await stack.vidsync(f"vidsync-{backend}", database=database)
        owners = []
        for _ in range(args.posters):  # one user per poster, each with its own connection pool
            api = Api(server.url, connections=2)
            stack.push_async_callback(api.close)
            await api.register()
            owners.append((api, await api.project()))
        swarm = Swarm(args.posters, 1)
        await swarm.start()
        stack.push_async_callback(swarm.close)
        # The subscribers log in as the first owner, who joins the other projects by invite.
        await swarm.open(server.url, owners[0][0].token)
        for i, (api, project) in enumerate(owners):
            if i:
                invite = await api.call("POST", f"/api/projects/{project}/invites", {})
                await owners[0][0].call("POST", "/api/projects/join",
                                        {"invite_code": invite["invite"]["code"]})
            await swarm.subscribe(project, 0, upto=i + 1, start=i, batch=True)
        names = itertools.count()
        for batch in [int(b) for b in args.batches.split(",")]:
            log(f"{backend}: batches of {batch} ({load_average()})")
            answers: list[float] = []
            errors: list[str] = []
            seconds = max(2.0, args.seconds * min(1.0, args.scale * 4))
            with profiled(server.pid, f"ingest-{backend}-{batch}"), CpuWindow((server.pid,)) as cpu:
                until = time.monotonic() + seconds
                done = await asyncio.gather(*(post_loop(api, project, batch, until, names,
                                                        answers, errors)
                                              for api, project in owners))
            targets = {project: last for (_, project), (_, last) in zip(owners, done, strict=True)}
            caught_up = await swarm.wait(targets, WAIT_S)
            tally = await swarm.report(targets)
            acked = sum(n for n, _ in done)
            rows.append({
                "backend": backend, "batch": batch, "posters": args.posters,
                "events": acked, "posts": len(answers), "seconds": cpu.wall_s,
                "events_per_s": acked / cpu.wall_s, "posts_per_s": len(answers) / cpu.wall_s,
                "answer_ms": summary(answers), "server_cores": cpu.cores,
                "machine_cores": cpu.machine_cores, "answer_errors": errors[:5],
                "delivered": tally.deliveries, "subscriber_caught_up": caught_up,
                "violation_total": (tally.violation_total + len(errors) + (not caught_up)
                                    + abs(tally.deliveries - acked)),
                "violations": tally.violations, "load_average": load_average()})
    return rows


async def run(args: argparse.Namespace) -> dict:
    rows = []
    for backend in args.backends.split(","):
        if backend not in BACKENDS:
            raise SystemExit(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        rows.extend(await run_backend(backend, args))
    return {"benchmark": "ingest", "rows": rows,
            "passed": all(r["violation_total"] == 0 for r in rows)}


def render(result: dict) -> str:
    rows = [("backend", "changes/post", "posters", "events/s", "posts/s", "answer p50",
             "answer p99", "events acked", "delivered+checked", "violations", "server CPU",
             "load avg")]
    for r in result["rows"]:
        rows.append((r["backend"], r["batch"], r["posters"], f"{r['events_per_s']:,.0f}",
                     f"{r['posts_per_s']:,.1f}", ms(r["answer_ms"]["p50"]),
                     ms(r["answer_ms"]["p99"]), r["events"], r["delivered"],
                     r["violation_total"], f"{r['server_cores']:.2f}", r["load_average"]))
    return table("Ingest: files/update, each poster waiting for its answer", rows)


if __name__ == "__main__":
    standalone("capacity-ingest", __doc__, add_args, run, render)
