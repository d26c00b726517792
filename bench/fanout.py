"""Fan-out benchmark: our server against the original Node design, one project, N subscribers.

For each server in turn this script starts it on a free port on 127.0.0.1, sets up what the
load generator needs, runs ``bench/loadgen`` against it (N socket.io subscribers, one change
posted every --interval-ms, every delivery timed and checked), samples the server's memory while
it runs, and stops it. It then prints one table and writes the full results as JSON to
``bench/results/``.

    .venv/bin/python bench/fanout.py [--subscribers 1000] [--events 2000] [--interval-ms 2]

Servers:
  vidsync   ``vidsync serve`` from this checkout (fresh data dir, a registered user, a project)
  node-ref  ``bench/node-ref``: socket.io rooms as in the phase-2C guide, no auth, no storage

The npm dependencies of bench/loadgen and bench/node-ref are installed with ``npm ci`` when
missing. Everything started here is stopped here, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from vidsync.testing import (
    HOST,
    Process,
    ServerProcess,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOADGEN = BENCH / "loadgen"
NODE_REF = BENCH / "node-ref"
RESULTS = BENCH / "results"
SERVERS = ("vidsync", "node-ref")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def log(message: str) -> None:
    print(f"[fanout] {message}", file=sys.stderr, flush=True)


# ---- processes ----------------------------------------------------------------------------


def ensure_npm_deps(package_dir: Path) -> None:
    """``npm ci`` a package whose node_modules is missing (npm writes this file last)."""
    if (package_dir / "node_modules" / ".package-lock.json").exists():
        return
    log(f"npm ci in {package_dir.relative_to(REPO)}")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=package_dir, check=True,
                   stdout=sys.stderr)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, in case a server forks workers."""
    pids, i = [pid], 0
    while i < len(pids):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
        i += 1
    return pids


def rss_bytes(pid: int) -> int:
    """Resident memory of the process tree (second field of /proc/<pid>/statm, in pages)."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{p}/statm") as f:
            total += int(f.read().split()[1]) * PAGE_SIZE
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process tree."""
    return cpu_seconds(*process_tree(pid))




class RssSampler(threading.Thread):
    """Polls a server's RSS so that the peak between two polls is not missed by much."""

    def __init__(self, pid: int, period_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.period_s = period_s
        self.peak = 0
        self._done = threading.Event()

    def reset_peak(self) -> None:
        self.peak = rss_bytes(self.pid)

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._done.wait(self.period_s)

    def stop(self) -> None:
        self._done.set()
        self.join()


# ---- HTTP setup (vidsync only; node-ref needs none) --------------------------------------


def http_json(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def setup_vidsync(base_url: str) -> tuple[str, str]:
    """Register a user and create a project; return (token, project id)."""
    account = {"email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
               "password": uuid.uuid4().hex, "name": "fan-out bench"}
    token = http_json("POST", f"{base_url}/api/auth/register", account)["token"]
    project = http_json("POST", f"{base_url}/api/projects", {"name": "fan-out bench"}, token)
    return token, project["project"]["id"]


# ---- one run ------------------------------------------------------------------------------


@dataclass
class RunResult:
    server: str
    subscribers: int
    rss_idle_bytes: int = 0
    rss_subscribed_bytes: int = 0
    rss_peak_bytes: int = 0
    rss_after_bytes: int = 0  # once every subscriber has gone: what the server keeps
    # Cores used while posting and draining: by the server, and by the whole machine (the
    # load generator reports its own share; the rest is other work on the machine).
    server_cpu_cores: float | None = None
    server_cpu_seconds: float | None = None
    machine_cpu_cores: float | None = None
    loadgen: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def deliveries_per_cpu_second(self) -> float | None:
        """The server's fan-out work per unit of CPU: unlike latency and throughput, it holds
        when other programs take CPU away from the run."""
        if not self.server_cpu_seconds or not self.loadgen:
            return None
        return self.loadgen["deliveries"] / self.server_cpu_seconds

    @property
    def rss_per_connection_bytes(self) -> float | None:
        if not self.rss_subscribed_bytes or not self.subscribers:
            return None
        return (self.rss_subscribed_bytes - self.rss_idle_bytes) / self.subscribers


def node_ref(log_path: Path) -> Process:
    """The Node reference server (bench/node-ref) on a free port, its npm dependencies installed
    when missing; ``start`` it. Ready once socket.io answers a handshake."""
    ensure_npm_deps(NODE_REF)
    port = free_port()
    return Process(["node", str(NODE_REF / "server.js"), "--host", HOST, "--port", str(port)], port,
                   name="node-ref", ready_path="/socket.io/?EIO=4&transport=polling",
                   log_path=log_path, cwd=REPO)


def start_server(name: str, workdir: Path, extra: tuple[str, ...] = ()) -> Process:
    if name == "vidsync":
        server = ServerProcess(workdir / "data", list(extra), quiet=True, cwd=REPO,
                               log_path=workdir / "vidsync.log")
    else:
        server = node_ref(workdir / "node-ref.log")
    return server.start()


def run_one(name: str, args: argparse.Namespace, workdir: Path,
            server_args: tuple[str, ...] = ()) -> RunResult:
    """One server under load; ``server_args`` are added to ``vidsync serve`` (bench/gc.py)."""
    result = RunResult(server=name, subscribers=args.subscribers)
    log(f"{name}: starting")
    server = start_server(name, workdir, server_args)
    base_url = server.url
    log(f"{name}: ready on {base_url}")
    sampler = RssSampler(server.pid)
    sampler.start()
    try:
        if name == "vidsync":
            token, project_id = setup_vidsync(base_url)
            mode = "vidsync"
        else:
            token, project_id = "", f"bench-{uuid.uuid4().hex[:8]}"
            mode = "seed"
        time.sleep(0.5)  # let start-up allocations settle before the idle reading
        result.rss_idle_bytes = rss_bytes(server.pid)
        # The peak that matters is under load, not during set-up (hashing the bench user's
        # password alone can take tens of MiB for a moment).
        sampler.reset_peak()
        argv = ["node", str(LOADGEN / "loadgen.js"), "--url", base_url, "--mode", mode,
                "--project", project_id, "--subscribers", str(args.subscribers),
                "--procs", str(args.procs), "--events", str(args.events),
                "--interval-ms", str(args.interval_ms), "--post-mode", args.post_mode,
                "--drain-timeout-s", str(args.drain_timeout_s)]
        if token:
            argv += ["--token", token]
        result.loadgen = run_loadgen(argv, server, result, args)
        time.sleep(1.0)  # let the server notice the closed connections and free them
        result.rss_after_bytes = rss_bytes(server.pid)
    except Exception as e:  # noqa: BLE001 - reported in the table; the next server still runs
        result.error = f"{type(e).__name__}: {e}"
        log(f"{name}: {result.error} (server log: {server.log_path})")
    finally:
        sampler.stop()
        result.rss_peak_bytes = sampler.peak
        server.stop()
    return result


def run_loadgen(argv: list[str], server: Process, result: RunResult,
                args: argparse.Namespace) -> dict:
    """Run the load generator, reading its progress lines to time the server readings."""
    # Connecting, posting and draining, with generous room; past this something hangs.
    limit_s = 120 + args.events * args.interval_ms / 1000 + args.drain_timeout_s
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    watchdog = threading.Timer(limit_s, kill)
    watchdog.start()
    report = None
    server_cpu = machine_cpu = wall_start = None
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            if msg["type"] == "subscribed":
                result.rss_subscribed_bytes = rss_bytes(server.pid)
            elif msg["type"] == "posting":
                server_cpu, machine_cpu = tree_cpu_seconds(server.pid), machine_busy_seconds()
                wall_start = time.monotonic()
            elif msg["type"] == "result":
                if wall_start is not None:
                    wall = time.monotonic() - wall_start
                    result.server_cpu_seconds = tree_cpu_seconds(server.pid) - server_cpu
                    result.server_cpu_cores = result.server_cpu_seconds / wall
                    result.machine_cpu_cores = (machine_busy_seconds() - machine_cpu) / wall
                report = msg
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
    if report is None:
        raise RuntimeError(f"load generator exited with {proc.returncode} without a result")
    return report


# ---- output -------------------------------------------------------------------------------


def mib(n: float | None) -> str:
    return "-" if not n else f"{n / 2**20:.1f} MiB"


def kib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**10:.1f} KiB"


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} ms"


def loadgen_cores(r: RunResult) -> float:
    return sum(r.loadgen["loadgen"]["cpu_cores"]) + r.loadgen["loadgen"]["poster_cpu_cores"]


def cpu_split(r: RunResult) -> str:
    if r.server_cpu_cores is None or r.machine_cpu_cores is None:
        return "-"
    other = max(0.0, r.machine_cpu_cores - r.server_cpu_cores - loadgen_cores(r))
    return f"{r.server_cpu_cores:.2f}/{loadgen_cores(r):.2f}/{other:.2f}"


def print_tables(results: list[RunResult], load: tuple[float, float, float]) -> None:
    print("load average at the start: {:.2f} {:.2f} {:.2f}; at the end: {:.2f} {:.2f} {:.2f}"
          .format(*load, *os.getloadavg()))
    main_rows = [("server", "subscribers", "p50", "p99", "max", "CPU/delivery", "peak RSS",
                  "RSS/connection", "deliveries checked", "violations")]
    diag_rows = [("server", "posts ok/failed", "post interval", "answer p50", "deliveries/s",
                  "after answer p99", "CPU server/loadgen/other",
                  "loadgen ELU", "disconnects")]
    for r in results:
        lg = r.loadgen
        if not lg:
            main_rows.append((r.server, str(r.subscribers), "error: " + (r.error or "?"),
                              "", "", "", mib(r.rss_peak_bytes), "", "", ""))
            continue
        lat = lg["latency_ms"]
        main_rows.append((
            r.server, str(r.subscribers), ms(lat["p50"]), ms(lat["p99"]), ms(lat["max"]),
            "-" if r.deliveries_per_cpu_second is None
            else f"{1e6 / r.deliveries_per_cpu_second:.1f} µs",
            mib(r.rss_peak_bytes), kib(r.rss_per_connection_bytes),
            f"{lg['deliveries']}/{lg['expected_deliveries']}", str(lg["violation_total"]),
        ))
        posts = lg["posts"]
        diag_rows.append((
            r.server, f"{posts['ok']}/{posts['failed']}", ms(posts["achieved_interval_ms"]),
            ms(posts["response_ms"]["p50"]), str(lg["delivery_rate_per_s"]),
            ms(lg["last_delivery_after_answer_ms"]["p99"]), cpu_split(r),
            "/".join(f"{u:.2f}" for u in lg["loadgen"]["event_loop_utilization"]),
            json.dumps(lg["disconnects"]) if lg["disconnects"] else "0",
        ))
    for rows in (main_rows, diag_rows):
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for i, row in enumerate(rows):
            print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                print("-+-".join("-" * w for w in widths))
        print()
    for r in results:
        if r.loadgen and r.loadgen["violation_total"]:
            print(f"{r.server} violations: {json.dumps(r.loadgen['violations'])}")
            for example in r.loadgen["violation_examples"]:
                print(f"  {json.dumps(example)}")
        if r.loadgen:
            for line in reading(r):
                print(line)


def reading(r: RunResult) -> list[str]:
    """Where the time went, and whether the load generator or the machine limited the run."""
    lg = r.loadgen
    answered = lg["posts"]["response_ms"]["p50"]
    after = lg["last_delivery_after_answer_ms"]["p99"]
    if answered is None or after is None:
        return []
    # Both servers fan a post out before answering it: time before the answer is the server's,
    # time between the answer and the last delivery is the kernel's and the subscribers'.
    lines = [f"{r.server}: posts answered after {answered:.1f} ms (p50), their last delivery "
             f"{after:.1f} ms (p99) after the answer"]
    # Taking in one post's burst of deliveries costs the subscriber processes some CPU time
    # (around 15 ms for 1000 subscribers), so only a clearly longer wait means they queued.
    if after > max(answered, 50.0):
        lines.append(f"{r.server}: deliveries waited longer after leaving the server than in it: "
                     "the load generator or the machine limited this run")
    if r.machine_cpu_cores is not None and r.server_cpu_cores is not None:
        other = r.machine_cpu_cores - r.server_cpu_cores - loadgen_cores(r)
        if other > 0.25:
            lines.append(f"{r.server}: other work on this machine used {other:.2f} cores "
                         "during the run; its numbers are disturbed")
    return lines


def git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    return None


def write_json(results: list[RunResult], args: argparse.Namespace) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"fanout-{stamp}.json"
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    document = {
        "started_at": stamp,
        "commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "node": node_version.strip()},
        "config": {"subscribers": args.subscribers, "events": args.events,
                   "interval_ms": args.interval_ms, "post_mode": args.post_mode,
                   "procs": args.procs, "repeat": args.repeat},
        "load_average": os.getloadavg(),
        "runs": [
            {"server": r.server, "error": r.error,
             "rss_idle_bytes": r.rss_idle_bytes, "rss_subscribed_bytes": r.rss_subscribed_bytes,
             "rss_peak_bytes": r.rss_peak_bytes, "rss_after_bytes": r.rss_after_bytes,
             "rss_per_connection_bytes": r.rss_per_connection_bytes,
             "server_cpu_cores": r.server_cpu_cores, "server_cpu_seconds": r.server_cpu_seconds,
             "deliveries_per_server_cpu_second": r.deliveries_per_cpu_second,
             "machine_cpu_cores": r.machine_cpu_cores,
             "loadgen": r.loadgen}
            for r in results
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# ---- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--events", type=int, default=2000, help="measured changes to post")
    p.add_argument("--interval-ms", type=float, default=2.0, help="time between two posts")
    p.add_argument("--post-mode", choices=("open", "sequential"), default="open",
                   help="open: a post every --interval-ms, answered or not; sequential: one "
                        "post at a time, each --interval-ms after the previous answer")
    p.add_argument("--procs", type=int, default=2, help="subscriber processes")
    p.add_argument("--drain-timeout-s", type=float, default=120.0,
                   help="how long after the last post every delivery may take to arrive")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"comma-separated, from: {', '.join(SERVERS)}")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds over all servers, interleaved so that a burst of other work "
                        "on the machine does not land on one server only")
    args = p.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        p.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain `kill` must still run the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ensure_npm_deps(LOADGEN)
    workdir = Path(tempfile.mkdtemp(prefix="vidsync-fanout-"))
    results = []
    load = os.getloadavg()
    try:
        for round_ in range(args.repeat):
            for name in args.servers:
                run_dir = workdir / f"{round_ + 1}-{name}"  # a fresh data dir for every run
                run_dir.mkdir()
                results.append(run_one(name, args, run_dir))
    finally:
        if results:
            print_tables(results, load)
            log(f"results: {write_json(results, args).relative_to(REPO)}")
        if any(r.error for r in results):
            log(f"server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
