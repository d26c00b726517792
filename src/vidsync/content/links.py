"""Signed download links: a URL a browser can open without an Authorization header.

A link is ``<payload>.<signature>``, both base64url: the payload names the project, the user, what
may be downloaded (one path, or everything under a prefix) and when the link expires; the
signature is an HMAC-SHA256 of the payload with the server's secret. Nothing is stored per link.
Whoever serves the link still checks that the user is a member at that moment, so removing a
member ends their links at once.

The secret comes from ``VIDSYNC_LINK_SECRET`` (nodes of one deployment must share it) or else from
``<data-dir>/link-secret``, created on first start with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

import orjson

SECRET_FILE = "link-secret"
DEFAULT_TTL_S = 300
MAX_TTL_S = 3600


class InvalidLink(Exception):
    """Malformed or not signed by us."""


class ExpiredLink(Exception):
    """Signed by us, but past its expiry."""


@dataclass(frozen=True, slots=True)
class LinkGrant:
    project_id: str
    user_id: str
    kind: str  # "file" or "folder"
    target: str  # the file's path, or the folder prefix ("" for the whole project)
    expires_at: float
    # A link to play a file in the page: served inline with its media type, and pinned to the
    # content (``file_hash``) it was made for, so every range of one playback is of one version.
    inline: bool = False
    file_hash: str | None = None

    def to_json(self) -> dict:
        raw = {"p": self.project_id, "u": self.user_id, "k": self.kind, "t": self.target,
               "e": int(self.expires_at)}
        if self.inline:
            raw |= {"i": 1, "h": self.file_hash}
        return raw


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(data_dir: str) -> bytes:
    """The link-signing secret: from the environment, or the data dir's 0600 file (made once)."""
    from_env = os.environ.get("VIDSYNC_LINK_SECRET")
    if from_env:
        if len(from_env) < 32:
            raise SystemExit("VIDSYNC_LINK_SECRET must be at least 32 characters")
        return hashlib.sha256(from_env.encode()).digest()
    path = os.path.join(data_dir, SECRET_FILE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as f:
            secret = f.read()
        if len(secret) < 32:
            raise SystemExit(f"{path} is damaged (shorter than 32 bytes); delete it") from None
        return secret
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


class LinkSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def sign(self, grant: LinkGrant) -> str:
        payload = _b64(orjson.dumps(grant.to_json()))
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, now: float | None = None) -> LinkGrant:
        payload, _, mac = token.partition(".")
        if not payload or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise InvalidLink()
        try:
            raw = orjson.loads(_unb64(payload))
            grant = LinkGrant(raw["p"], raw["u"], raw["k"], raw["t"], float(raw["e"]),
                              bool(raw.get("i")), raw.get("h"))
        except (ValueError, KeyError, TypeError):
            raise InvalidLink() from None
        if grant.expires_at < (time.time() if now is None else now):
            raise ExpiredLink()
        return grant
