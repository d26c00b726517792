"""``vidsync serve``: run the server until SIGTERM or Ctrl-C, then shut down cleanly.

aiohttp's runner stops accepting, lets in-flight requests finish (so every acknowledged write is
already committed), closes the sockets, and closes the store last.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from vidsync.content.blobstore import DEFAULT_GC_GRACE_S
from vidsync.content.config import (
    DEFAULT_GC_INTERVAL_S,
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_PROJECT_QUOTA,
    DEFAULT_RETENTION_S,
    ContentConfig,
    parse_duration,
    parse_size,
)
from vidsync.realtime.session import KERNEL_SEND_BUFFER
from vidsync.realtime.transport import RealtimeConfig
from vidsync.server.app import build_app
from vidsync.server.clientaddr import parse_networks
from vidsync.server.config import ServerConfig
from vidsync.server.content import RedactingAccessLogger
from vidsync.store import is_postgres

# Pending connections the kernel may queue before accept (it caps this at net.core.somaxconn).
# aiohttp's default, 128, is far below a reconnect storm of thousands of subscribers: the kernel
# drops the rest of the SYNs and each of those clients waits 1 s, 3 s, 7 s... to retry
# (bench/capacity/storm.py).
LISTEN_BACKLOG = 4096


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    _skip = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._skip})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ClientGarbageFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (a NUL in a header value, a broken request line) at
    ERROR with a traceback, and answers it 400. The mistake is the client's, so it becomes one
    WARNING line saying what was wrong: ERROR stays for the server's own faults."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 500) < 500:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "unparsable request from %s answered %d: %s"
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            # Only the reason: the rest of the message quotes the offending line, which may be a
            # header carrying a token.
            reason = str(exc.message).split("\n", 1)[0].rstrip(": ")[:200]
            record.args = (remote, exc.code, reason.encode("ascii", "backslashreplace").decode())
            record.exc_info = record.exc_text = None
        return True


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiohttp.server").addFilter(ClientGarbageFilter())


def add_storage_options(p: argparse.ArgumentParser) -> None:
    """Where data lives and how long history is kept: shared by ``serve`` and ``gc``."""
    env = os.environ.get
    p.add_argument("--data-dir", default=env("VIDSYNC_DATA_DIR", "./data"),
                   help="where the SQLite database and content blobs live")
    p.add_argument("--database", default=env("VIDSYNC_DATABASE"),
                   help="postgresql://... to use PostgreSQL (default: SQLite in --data-dir)")
    p.add_argument("--blob-dir", default=env("VIDSYNC_BLOB_DIR"),
                   help="where file content is kept (default: <data-dir>/blobs; nodes may share it)")
    p.add_argument("--max-file-size", type=parse_size,
                   default=parse_size(env("VIDSYNC_MAX_FILE_SIZE", str(DEFAULT_MAX_FILE_SIZE))),
                   help="largest file a project may hold, e.g. 50G (default 256G)")
    p.add_argument("--project-quota", type=parse_size,
                   default=parse_size(env("VIDSYNC_PROJECT_QUOTA", str(DEFAULT_PROJECT_QUOTA))),
                   help="content bytes one project may store, e.g. 500G (default 1T)")
    p.add_argument("--retention", type=parse_duration,
                   default=parse_duration(env("VIDSYNC_RETENTION", str(DEFAULT_RETENTION_S))),
                   help="how long a replaced or deleted version stays restorable, e.g. 30d, 12h"
                   " (default 30d); live files are always kept")
    p.add_argument("--gc-grace", type=parse_duration,
                   default=parse_duration(env("VIDSYNC_GC_GRACE", str(DEFAULT_GC_GRACE_S))),
                   help="content written or used this recently is never collected (default 1h):"
                   " longer than any upload takes from its manifest to its change")


def content_config(args: argparse.Namespace) -> ContentConfig:
    return ContentConfig(blob_dir=args.blob_dir, max_file_size=args.max_file_size,
                         project_quota=args.project_quota, retention_s=args.retention,
                         gc_interval_s=getattr(args, "gc_interval", 0.0),
                         gc_grace_s=args.gc_grace)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    env = os.environ.get
    p = subparsers.add_parser("serve", help="run the Vidsync server (HTTP API + Socket.IO)")
    p.add_argument("--host", default=env("VIDSYNC_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("VIDSYNC_PORT", "5000")))
    add_storage_options(p)
    p.add_argument("--redis", default=env("VIDSYNC_REDIS"),
                   help="redis://... backplane, to run several nodes")
    p.add_argument("--allowed-origin", action="append", default=[],
                   help="a browser origin allowed besides the server's own (repeatable)")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS[/BITS]",
                   help="a reverse proxy whose X-Forwarded-For gives the client's address "
                   "(repeatable; also VIDSYNC_TRUSTED_PROXIES, comma-separated). Without it the "
                   "header is ignored and rate limits count the proxy's address")
    p.add_argument("--ping-interval", type=float, default=25.0, help="seconds")
    p.add_argument("--ping-timeout", type=float, default=20.0, help="seconds")
    p.add_argument("--max-buffer", type=int, default=4 * 1024 * 1024,
                   help="bytes a client may leave unread before it is dropped")
    p.add_argument("--send-buffer", type=parse_size, default=KERNEL_SEND_BUFFER,
                   help="kernel send buffer (SO_SNDBUF) per WebSocket, e.g. 256K (default; "
                        "Linux allots twice this): bounds what a stalled client pins in the "
                        "kernel, apart from --max-buffer")
    p.add_argument("--no-websocket", action="store_true",
                   help="refuse the WebSocket transport (clients fall back to long-polling)")
    p.add_argument("--token-ttl", type=int, default=int(env("VIDSYNC_TOKEN_TTL", "2592000")),
                   help="seconds a login token stays valid (default 30 days)")
    p.add_argument("--login-attempts", type=int, default=int(env("VIDSYNC_LOGIN_ATTEMPTS", "10")),
                   help="failed logins per account and client address per window (default 10);"
                   " 3x that per account from all addresses, after which each address gets 2"
                   " guesses at it; 3x that per address across accounts, registrations included")
    p.add_argument("--login-window", type=float, default=float(env("VIDSYNC_LOGIN_WINDOW", "300")),
                   help="seconds of the login rate-limit window")
    p.add_argument("--metrics-token", default=env("VIDSYNC_METRICS_TOKEN"),
                   help="bearer token /metrics requires (prefer the VIDSYNC_METRICS_TOKEN "
                   "variable: a command line is visible to other users)")
    p.add_argument("--gc-interval", type=parse_duration,
                   default=parse_duration(env("VIDSYNC_GC_INTERVAL", str(DEFAULT_GC_INTERVAL_S))),
                   help="collect unreferenced content this often, e.g. 1h (default); 0 turns it"
                   " off (then run 'vidsync gc')")
    p.add_argument("--lock-ttl", type=parse_duration,
                   default=parse_duration(env("VIDSYNC_LOCK_TTL", "5m")),
                   help="how long a file lock outlives its holder's connection, e.g. 90s, 10m"
                   " (default 5m); while connected, the holder keeps it")
    p.add_argument("--shutdown-grace", type=float, default=3.0, metavar="SECONDS",
                   help="on SIGTERM, how long in-flight requests may take to finish (default 3);"
                        " long-polls and sockets are released at once, and a request cut off"
                        " was never acknowledged, so its client retries it")
    p.add_argument("--log-level", default=env("VIDSYNC_LOG_LEVEL", "info"))
    p.set_defaults(func=serve)


def require_extra(module: str, extra: str, option: str) -> None:
    """Exit 2 with one line naming the extra to install when ``option`` needs a library that a
    plain ``pip install vidsync`` leaves out (rather than a traceback once the server starts)."""
    try:
        importlib.import_module(module)
    except ImportError:
        sys.stderr.write(f"vidsync: {option} needs the '{extra}' extra: "
                         f"pip install 'vidsync[{extra}]'\n")
        sys.exit(2)


def serve(args: argparse.Namespace) -> None:
    if args.database and is_postgres(args.database):
        require_extra("asyncpg", "postgres", "--database postgresql://...")
    if args.redis:
        require_extra("redis", "redis", "--redis")
    setup_logging(args.log_level)
    origins = tuple(args.allowed_origin) + tuple(
        o for o in os.environ.get("VIDSYNC_ALLOWED_ORIGINS", "").split(",") if o)
    if "*" in origins:
        sys.exit("vidsync: '*' is not an allowed origin; list the origins")
    proxies = tuple(args.trusted_proxy) + tuple(
        p for p in os.environ.get("VIDSYNC_TRUSTED_PROXIES", "").split(",") if p.strip())
    try:
        parse_networks(proxies)
    except ValueError as e:
        sys.exit(f"vidsync: --trusted-proxy: {e}")
    if args.lock_ttl < 1:
        sys.exit("vidsync: --lock-ttl must be at least 1s")
    config = ServerConfig(
        host=args.host, port=args.port, data_dir=args.data_dir, database=args.database,
        redis=args.redis, allowed_origins=origins, trusted_proxies=proxies,
        token_ttl_s=args.token_ttl,
        login_attempts=args.login_attempts, login_window_s=args.login_window,
        metrics_token=args.metrics_token, lock_ttl_s=args.lock_ttl,
        realtime=RealtimeConfig(ping_interval_s=args.ping_interval,
                                ping_timeout_s=args.ping_timeout, max_buffer=args.max_buffer,
                                send_buffer=args.send_buffer,
                                websocket=not args.no_websocket),
        content=content_config(args))
    os.makedirs(config.data_dir, exist_ok=True)
    web.run_app(build_app(config), host=config.host, port=config.port, print=None,
                access_log_format='%a "%r" %s %b %Tf', shutdown_timeout=args.shutdown_grace,
                access_log_class=RedactingAccessLogger, backlog=LISTEN_BACKLOG)
