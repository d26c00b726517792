"""Garbage collection in the server (every ``--gc-interval``) and as ``vidsync gc``.

The collector itself is ``vidsync.content.gc``. The server runs it as a ``vidsync gc`` child
process with its own storage options (passed in the environment, so the database URL stays out
of ``ps``): marking a million blocks is seconds of Python work, which on a thread of the server
would take turns with the event loop for the GIL and delay live delivery (bench/gc.py). This
module runs that child on a timer, publishes what it measured (``/metrics``, and the usage
``GET /api/projects/:id`` shows), and gives operators the same run on demand.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

from vidsync.content.gc import Collector, Report, Usage
from vidsync.server.config import ServerConfig
from vidsync.server.content import CONTENT, ContentService
from vidsync.server.http import SERVICES

USAGE_FIELDS = [f.name for f in dataclasses.fields(Usage) if f.name != "counted_at"]

log = logging.getLogger("vidsync.gc")


class GcRunner:
    """Runs collections for this node (in a child process) and keeps the totals /metrics
    reports."""

    def __init__(self, content: ContentService, env: dict[str, str]) -> None:
        self.content = content
        self.env = env  # the child's storage options, as VIDSYNC_* variables
        self.runs = 0
        self.removed_bytes = 0
        self.last_seconds = 0.0
        self._task: asyncio.Task | None = None

    async def run_once(self) -> dict:
        """One collection; returns its report (``Report.to_json``)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vidsync", "gc", "--json", env={**os.environ, **self.env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"vidsync gc exited with {proc.returncode}: "
                               f"{err.decode(errors='replace')[-2000:]}")
        report = json.loads(out)
        if report["skipped"]:
            log.info("collection skipped: another one holds the blob directory")
            return report
        self.runs += 1
        self.last_seconds = report["seconds"]
        now = time.time()
        for p in report["projects"]:
            self.removed_bytes += p["removed_bytes"]
            self.content.usages[p["project_id"]] = Usage(
                **{k: p[k] for k in USAGE_FIELDS}, counted_at=now)
            if p["removed_blocks"]:
                self.content.blobs.forget_usage(p["project_id"])
        log.info("collection done", extra={
            "seconds": report["seconds"], "projects": len(report["projects"]),
            "removed_blocks": sum(p["removed_blocks"] for p in report["projects"]),
            "removed_bytes": sum(p["removed_bytes"] for p in report["projects"])})
        return report

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run_once()
            except Exception:
                log.exception("collection failed; the next one will try again")

    def start(self, interval: float) -> None:
        if interval > 0:
            self._task = asyncio.create_task(self._loop(interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class StorageMetrics(PromCollector):
    """Per-project usage as last measured, the collector's totals, and what saved hash states
    spared uploads, read at scrape time."""

    def __init__(self, runner: GcRunner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        usages = dict(self.runner.content.usages)
        for kind in ("live", "history", "pending", "reclaimable", "stored"):
            g = GaugeMetricFamily(f"vidsync_storage_{kind}_bytes",
                                  f"Bytes of distinct blocks: {kind} (as last measured)",
                                  labels=["project"])
            for project_id, u in usages.items():
                g.add_metric([project_id], getattr(u, f"{kind}_bytes"))
            yield g
        yield CounterMetricFamily("vidsync_gc_runs", "Collections this node ran",
                                  value=self.runner.runs)
        yield CounterMetricFamily("vidsync_gc_removed_bytes", "Block bytes collections removed",
                                  value=self.runner.removed_bytes)
        yield GaugeMetricFamily("vidsync_gc_last_duration_seconds", "The last collection's time",
                                value=self.runner.last_seconds)
        yield CounterMetricFamily("vidsync_upload_hash_resumed_bytes",
                                  "Bytes of uploaded files whose whole-file hash resumed from the "
                                  "saved states of an earlier version instead of being read",
                                  value=self.runner.content.hash_resumed_bytes)


GC_RUNNER: web.AppKey[GcRunner] = web.AppKey("gc_runner", GcRunner)


def storage_env(config: ServerConfig) -> dict[str, str]:
    """The server's storage options as the environment ``vidsync gc`` reads them."""
    c = config.content
    env = {"VIDSYNC_DATA_DIR": config.data_dir, "VIDSYNC_DATABASE": config.database_url,
           "VIDSYNC_RETENTION": repr(c.retention_s), "VIDSYNC_GC_GRACE": repr(c.gc_grace_s),
           "VIDSYNC_PROJECT_QUOTA": str(c.project_quota),
           "VIDSYNC_MAX_FILE_SIZE": str(c.max_file_size)}
    if c.blob_dir:
        env["VIDSYNC_BLOB_DIR"] = c.blob_dir
    return env


def install(app: web.Application, registry: CollectorRegistry) -> GcRunner:
    """Collect every --gc-interval while the app runs; report into the metrics ``registry``."""
    content = app[CONTENT]
    runner = app[GC_RUNNER] = GcRunner(content, storage_env(app[SERVICES].config))
    registry.register(StorageMetrics(runner))

    async def on_startup(app: web.Application) -> None:
        runner.start(content.config.gc_interval_s)

    async def on_shutdown(app: web.Application) -> None:
        await runner.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return runner


# -- vidsync gc ------------------------------------------------------------------------------------

def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    from vidsync.server.main import add_storage_options

    p = subparsers.add_parser(
        "gc", help="remove content no kept version needs (run with the server's storage options;"
        " safe beside running servers)")
    add_storage_options(p)
    p.add_argument("--dry-run", action="store_true",
                   help="measure usage and what would be removed; remove nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_gc)


async def _collect(args: argparse.Namespace) -> Report:
    from vidsync.content.blobstore import BlobStore
    from vidsync.server.main import content_config
    from vidsync.store import open_store

    config = ServerConfig(data_dir=args.data_dir, database=args.database,
                          content=content_config(args))
    store = await open_store(config.database_url)
    try:
        blobs = BlobStore(config.content.blob_dir or os.path.join(config.data_dir, "blobs"),
                          config.content.project_quota, config.content.gc_grace_s)
        collector = Collector(store, blobs, config.content.retention_s)
        if not args.dry_run:
            return await collector.collect()
        report = Report()
        for project_id in await store.project_ids():
            report.projects.append(await collector.collect_project(project_id, dry_run=True))
        return report
    finally:
        await store.close()


def run_gc(args: argparse.Namespace) -> None:
    report = asyncio.run(_collect(args))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return
    if report.skipped:
        sys.exit("vidsync gc: another collection is running on this blob directory; try later")
    for p in report.projects:
        u = p.usage
        print(f"{p.project_id}: live {u.live_bytes} B, history {u.history_bytes} B, pending "
              f"{u.pending_bytes} B, reclaimable {u.reclaimable_bytes} B; removed "
              f"{p.removed_blocks} blocks ({p.removed_bytes} B), {p.removed_manifests} "
              f"manifests, {p.removed_tmp} temp files")
    verb = "measured" if args.dry_run else f"collected in {report.seconds:.1f} s"
    print(f"{len(report.projects)} project(s) {verb}")
