"""Server settings, from the command line or ``VIDSYNC_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from vidsync.content.config import ContentConfig
from vidsync.realtime.transport import RealtimeConfig


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: str = "./data"
    # A file path / sqlite:///path (default: <data_dir>/vidsync.db) or postgresql://...
    database: str | None = None
    redis: str | None = None
    # When set, /metrics wants it as a bearer token; otherwise keep /metrics off the public proxy.
    metrics_token: str | None = None
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For tells the client's address.
    trusted_proxies: tuple[str, ...] = ()
    # Browser origins allowed besides the server's own; never a wildcard.
    allowed_origins: tuple[str, ...] = ()
    token_ttl_s: int = 30 * 24 * 3600
    max_json_body: int = 4 * 1024 * 1024
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    # Failed logins per (account, client address) in a window; see server/ratelimit.py.
    login_attempts: int = 10
    login_window_s: float = 300.0
    # A file lock lasts this long after its holder's last connection to the project went away.
    lock_ttl_s: float = 300.0

    @property
    def database_url(self) -> str:
        return self.database or os.path.join(self.data_dir, "vidsync.db")
