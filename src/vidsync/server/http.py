"""Request helpers shared by the route modules: JSON in and out, the caller, the app's parts."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from vidsync.changes import normalize_path
from vidsync.errors import ApiError, bad_request, forbidden, not_found, unauthorized
from vidsync.server.cookies import COOKIE, CSRF_HEADER, cookie_token
from vidsync.store.base import may_write

if TYPE_CHECKING:
    from vidsync.server.app import Services
    from vidsync.store import User

SERVICES: web.AppKey[Services] = web.AppKey("services")
# Integer query parameters are plain decimal numbers (no '+', spaces or '_' that int() allows).
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
MAX_QUERY_INT = 2**62
# The white space the server trims from names, codes and emails: ASCII only, the one set every
# regex dialect (the OpenAPI document's patterns included) agrees on.
SPACE = " \t\n\r\f\v"


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def read_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = await request.read()  # bounded by the app's client_max_size (413 past it)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"malformed JSON: {e}", code="invalid_json") from None


def token_hash(token: str) -> str:
    """Tokens are 256 random bits, so a fast hash is enough: only hashes are stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_user(request: web.Request) -> User:
    """The caller, from a live bearer token (or the web UI's session cookie), or 401."""
    cached = request.get("user")
    if cached is not None:
        return cached
    token = bearer_token(request) or cookie_token(request)
    if token is None:
        if COOKIE in request.cookies:
            raise unauthorized("the session cookie counts only on same-origin requests, with "
                               f"'{CSRF_HEADER}' on those that change something")
        raise unauthorized("send 'Authorization: Bearer <token>'")
    found = await services(request).auth.authenticate(token)
    if found is None:
        raise unauthorized("invalid, expired or revoked token")
    request["user"], request["token_hash"] = found
    return found[0]


async def require_role(request: web.Request, project_id: str, owner: bool = False) -> tuple[User, str]:
    """The caller and their role in the project; 404 for strangers (a project's existence is not
    revealed to them), 403 for others where the owner is required."""
    user = await current_user(request)
    role = await services(request).store.role_of(project_id, user.id)
    if role is None:
        raise not_found("no such project, or you are not a member")
    if owner and role != "owner":
        raise forbidden("only the project's owner can do this")
    return user, role


async def require_writer(request: web.Request, project_id: str) -> tuple[User, str]:
    """The caller, if their role may change the project's files (upload, post changes, restore
    versions: ``WRITER_ROLES``); 403 otherwise (404 for strangers). The one place that says who
    may write; the stores check the same again inside the append's transaction."""
    user, role = await require_role(request, project_id)
    if not may_write(role):
        raise not_writer()
    return user, role


def not_writer() -> ApiError:
    return forbidden("your role in this project cannot change its files (viewers read only;"
                     " the owner can make you an editor)")


def parse_target(raw: object, name: str = "path") -> str:
    """A file path, or a folder as 'dir/' (a prefix), or '/' for the whole project."""
    if raw == "/":
        return ""
    if not isinstance(raw, str):
        raise bad_request(f"'{name}' must be a string", code="invalid_path")
    folder = raw.endswith("/")
    try:
        path = normalize_path(raw.rstrip("/") if folder else raw)
    except ValueError as e:
        raise bad_request(f"invalid {name} {raw!r}: {e}", code="invalid_path") from None
    return path + "/" if folder else path


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _DECIMAL.fullmatch(raw):
        raise bad_request(f"'{name}' must be an integer", code="invalid_query")
    value = int(raw)
    if not lo <= value <= hi:
        raise bad_request(f"'{name}' must be between {lo} and {hi}", code="invalid_query")
    return value
