"""Where the agents find their server and token: the user's config file, or the environment.

``vidsync login``/``register`` write ``config.json`` in the user's config directory (platformdirs;
``VIDSYNC_CONFIG_DIR`` overrides it), readable by the user alone since it holds a bearer token.
``VIDSYNC_SERVER`` and ``VIDSYNC_TOKEN`` override the file, so scripts need no login step.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

CONFIG_FILE = "config.json"


class NotLoggedIn(Exception):
    """No server or token is configured; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Credentials:
    server: str
    token: str
    email: str | None = None


def config_dir() -> Path:
    override = os.environ.get("VIDSYNC_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("vidsync"))


def normalize_server(url: str) -> str:
    """``host:port`` or ``http(s)://host:port/`` to ``http(s)://host:port`` (no trailing slash)."""
    url = url.strip().rstrip("/")
    if not url:
        raise ValueError("the server URL is empty")
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the server URL must be http:// or https://, got {url!r}")
    return url


def _read_file() -> dict:
    try:
        data = json.loads((config_dir() / CONFIG_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise NotLoggedIn(f"cannot read {config_dir() / CONFIG_FILE}: {e}") from None
    return data if isinstance(data, dict) else {}


def load_credentials() -> Credentials:
    """The server and token to use: the environment first, then the config file."""
    stored = _read_file()
    server = os.environ.get("VIDSYNC_SERVER") or stored.get("server")
    token = os.environ.get("VIDSYNC_TOKEN") or stored.get("token")
    if not server or not token:
        raise NotLoggedIn("not logged in: run 'vidsync login --server URL --email EMAIL' "
                          "(or set VIDSYNC_SERVER and VIDSYNC_TOKEN)")
    return Credentials(normalize_server(server), token, stored.get("email"))


def save_credentials(creds: Credentials) -> Path:
    """Write the config file atomically with mode 0600 (in a 0700 directory): it holds a token."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    target = directory / CONFIG_FILE
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config-")  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"server": creds.server, "token": creds.token, "email": creds.email}, f)
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target
