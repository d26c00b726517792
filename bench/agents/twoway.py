"""Two editors: a write in one editor's folder until it is verified in the other's, and the time
for a conflict to be resolved in every folder.

    .venv/bin/python bench/agents/twoway.py [--samples 100] [--conflicts 10] [--debounce 0.5]

Starts a scratch server, ``vidsync share`` on the owner's folder and ``vidsync join`` (both ways)
for two editors, at the default debounce and settle unless told otherwise. Series:

1. editor -> editor: one small file written at a time in editor A's folder, timed until editor
   B's folder holds the same bytes (B's agent renames a file into place only after checking its
   SHA-256). Beside it, the same measure owner -> editor, the reference (today's owner -> viewer
   path, now through an editor's two-way folder).
2. conflicts: both editors save the same file at once; timed from the saves until all three
   folders hold the same tree with both versions (one of them as a conflict copy).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from harness import (
    account,
    agent,
    env_for,
    invite,
    machine,
    percentile,
    save,
    share_folder,
    start_server,
    wait_connected,
)
from latency import summary, wait_for

from vidsync.testing import AgentProcess


def tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.samefile(dirpath, root):
            dirnames[:] = [d for d in dirnames if d != ".vidsync"]
        for name in filenames:
            full = Path(dirpath) / name
            try:
                out[str(full.relative_to(root))] = full.read_bytes()
            except FileNotFoundError:  # moved meanwhile
                pass
    return out


def wait_resolved(folders: list[Path], versions: set[bytes], timeout: float = 60) -> float:
    """When every folder holds the same tree containing every one of ``versions``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trees = [tree(f) for f in folders]
        if all(t == trees[0] for t in trees) and versions <= set(trees[0].values()):
            return time.perf_counter()
        time.sleep(0.005)
    raise SystemExit(f"the conflict was not resolved everywhere in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--conflicts", type=int, default=10)
    parser.add_argument("--debounce", type=float, default=0.5, help="every agent's --debounce")
    parser.add_argument("--settle", type=float, default=0.25, help="every agent's --settle")
    args = parser.parse_args()
    timing = ["--debounce", str(args.debounce), "--settle", str(args.settle)]

    scratch = Path(tempfile.mkdtemp(prefix="vidsync-bench-"))
    server = start_server(scratch / "server")
    procs: list[AgentProcess] = []
    try:
        owner = asyncio.run(account(server.url, "owner"))
        src = scratch / "src"
        src.mkdir()
        sharer, project_id = share_folder(src, server.url, owner, scratch / "owner",
                                          scratch / "share.log", timing)
        procs.append(sharer)
        editors = []
        for name in ("ana", "ben"):
            token = asyncio.run(account(server.url, name))
            code = asyncio.run(invite(server.url, owner, project_id, role="editor"))
            (scratch / name).mkdir()
            folder = scratch / f"{name}-folder"
            procs.append(agent(["join", *timing, code, str(folder)],
                               env_for(server.url, token, scratch / name), scratch / f"{name}.log"))
            wait_connected(folder)
            editors.append(folder)
        a, b = editors

        def series(writer: Path, reader: Path, prefix: str) -> list[float]:
            out = []
            for i in range(args.samples):
                data = f"{prefix} {i} {random.random()}\n".encode()
                t0 = time.perf_counter()
                (writer / f"{prefix}-{i}.txt").write_bytes(data)
                out.append(wait_for(reader / f"{prefix}-{i}.txt", data) - t0)
                time.sleep(random.uniform(0.05, 0.15))
            return out

        editor_to_editor = series(a, b, "a2b")
        owner_to_editor = series(src, b, "o2b")

        resolved = []
        for i in range(args.conflicts):
            path = f"conflict-{i}.prproj"
            (a / path).write_bytes(b"base")
            wait_resolved([src, a, b], {b"base"})
            versions = {f"ana's {i}".encode(), f"ben's {i}".encode()}
            t0 = time.perf_counter()
            (a / path).write_bytes(f"ana's {i}".encode())
            (b / path).write_bytes(f"ben's {i}".encode())
            resolved.append(wait_resolved([src, a, b], versions) - t0)

        print(f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        results = {
            "machine": machine(), "debounce_s": args.debounce, "settle_s": args.settle,
            "editor_to_editor": summary(f"editor write -> other editor (debounce "
                                        f"{args.debounce}, settle {args.settle})", editor_to_editor),
            "owner_to_editor": summary("owner write -> editor (reference)", owner_to_editor),
            "conflict_resolved": summary("two saves at once -> resolved in 3 folders", resolved),
            "conflict_p50_ms": percentile([r * 1000 for r in resolved], 50),
        }
        print(f"results: {save('agents-twoway', results)}")
    finally:
        for p in procs:
            p.stop()
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
