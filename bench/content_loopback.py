"""Content store throughput on loopback: hash, upload, download and stream one file.

    .venv/bin/python bench/content_loopback.py --size-mib 512

Starts its own ``vidsync serve`` in a scratch directory (fsync on, as in production), writes a
random file, then times ``split_file``, ``Client.upload_file`` (every block new),
``Client.download_file`` (nothing local) and ``Client.content`` (the whole file as one stream).
Each step also prints the CPU seconds the client and the server used, beside the floor the
checks set: SHA-256 of every byte costs ``sha256 s/GiB`` (measured first, on this machine) per pass.
A quick check, not a formal benchmark: client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

from vidsync.client import Client, split_file
from vidsync.testing import ServerProcess, cpu_seconds

MiB = 1024 * 1024
REQUESTS = 2000  # per request-cost line




def sha256_seconds_per_gib() -> float:
    data = os.urandom(64 * MiB)
    t = time.perf_counter()
    hashlib.sha256(data).digest()
    return (time.perf_counter() - t) * 16


async def run(url: str, server_pid: int, path: Path, size: int, out: Path,
              concurrency: int) -> None:
    gib = size / (1024 * MiB)
    sha = sha256_seconds_per_gib()
    print(f"SHA-256 of a GiB in memory: {sha:.2f} s (one pass over this file: {sha * gib:.2f} s)")
    print(f"{'step':<34} {'rate':>13}  {'wall':>7}  {'client CPU':>10}  {'server CPU':>10}")
    async with Client(url, upload_concurrency=concurrency, download_concurrency=concurrency) as c:
        await c.register(f"bench-{os.getpid()}-{time.time_ns()}@example.com", "correct horse 1")
        pid = (await c.create_project("bench"))["id"]
        me = os.getpid()

        class step:
            def __init__(self, what: str) -> None:
                self.what = what

            def __enter__(self) -> None:
                self.t = time.perf_counter()
                self.cpu = cpu_seconds(me), cpu_seconds(server_pid)

            def __exit__(self, *exc: object) -> None:
                seconds = time.perf_counter() - self.t
                client, server = (cpu_seconds(me) - self.cpu[0],
                                  cpu_seconds(server_pid) - self.cpu[1])
                print(f"{self.what:<34} {size / MiB / seconds:7.0f} MiB/s  {seconds:6.2f} s  "
                      f"{client:8.2f} s  {server:8.2f} s")

        with step("split_file"):
            manifest = await asyncio.to_thread(split_file, path)
        with step(f"upload_file, hashed (x{concurrency})"):
            result = await c.upload_file(pid, path, manifest=manifest)
        assert result.uploaded_bytes == size
        with step(f"download_file (x{concurrency})"):
            await c.download_file(pid, manifest, out)
        n = 0
        with step("content stream (one request)"):
            async for chunk in c.content(pid, manifest.hash):
                n += len(chunk)
        assert n == size
        print(f"floor (SHA-256 passes x {sha * gib:.2f} s): split 2, upload 2 (server), "
              f"download 2 (client), stream 0")

        # What one request costs the server, beside the bytes: the same block fetched again and
        # again (in the page cache), then new small blocks sent, ``concurrency`` at a time.
        gate = asyncio.Semaphore(concurrency)

        async def per_request(what: str, requests: list[Awaitable[object]]) -> None:
            async def one(request: Awaitable[object]) -> None:
                async with gate:
                    await request

            before = cpu_seconds(server_pid)
            t = time.perf_counter()
            await asyncio.gather(*(one(r) for r in requests))
            seconds = time.perf_counter() - t
            print(f"{len(requests)} {what}: {seconds / len(requests) * 1000:.2f} ms each, server "
                  f"CPU {(cpu_seconds(server_pid) - before) / len(requests) * 1000:.2f} ms per "
                  "request")

        block = manifest.blocks[0]
        await per_request(f"GETs of one {block.size // 1024} KiB block",
                          [c.get_block(pid, block.hash) for _ in range(REQUESTS)])
        small = [os.urandom(64 * 1024) for _ in range(REQUESTS)]
        await per_request("PUTs of new 64 KiB blocks",
                          [c.put_block(pid, hashlib.sha256(d).hexdigest(), d) for d in small])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vidsync-bench-") as tmp:
        root = Path(tmp)
        path = root / "input.bin"
        with open(path, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MiB))
        server = ServerProcess(root / "server", quiet=True).start()
        try:
            asyncio.run(run(server.url, server.pid, path, args.size_mib * MiB,
                            root / "output.bin", args.concurrency))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
