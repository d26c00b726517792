"""Content store throughput on loopback: hash, upload, download and stream one file.

    .venv/bin/python bench/content_loopback.py --size-mib 512

Starts its own ``vidsync serve`` in a scratch directory (fsync on, as in production), writes a
random file, then times ``split_file``, ``Client.upload_file`` (every block new),
``Client.download_file`` (nothing local) and ``Client.content`` (the whole file as one stream).
A quick check, not a formal benchmark: client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from vidsync.client import Client, split_file
from vidsync.testing import ServerProcess

MiB = 1024 * 1024


async def run(url: str, path: Path, size: int, out: Path, concurrency: int) -> None:
    async with Client(url, upload_concurrency=concurrency, download_concurrency=concurrency) as c:
        await c.register(f"bench-{os.getpid()}-{time.time_ns()}@example.com", "correct horse 1")
        pid = (await c.create_project("bench"))["id"]

        def report(what: str, seconds: float) -> None:
            print(f"{what:<34} {size / MiB / seconds:8.0f} MiB/s  ({seconds:.2f} s)")

        t = time.perf_counter()
        manifest = await asyncio.to_thread(split_file, path)
        report(f"split_file ({len(manifest.blocks)} blocks)", time.perf_counter() - t)
        t = time.perf_counter()
        result = await c.upload_file(pid, path)
        report(f"upload_file (concurrency {concurrency})", time.perf_counter() - t)
        assert result.uploaded_bytes == size
        t = time.perf_counter()
        await c.download_file(pid, manifest, out)
        report(f"download_file (concurrency {concurrency})", time.perf_counter() - t)
        t = time.perf_counter()
        n = 0
        async for chunk in c.content(pid, manifest.hash):
            n += len(chunk)
        report("content stream (one request)", time.perf_counter() - t)
        assert n == size


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
            asyncio.run(run(server.url, path, args.size_mib * MiB, root / "output.bin",
                            args.concurrency))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
