"""Accounts and bearer tokens: register, login (rate-limited), logout, me.

The web UI gets its token as an HttpOnly session cookie instead of in the body (server/cookies.py).

Passwords are hashed with argon2id (argon2-cffi's RFC 9106 low-memory profile) on a worker thread,
so a login does not stall the event loop. Tokens are 256-bit random strings, stored only as
SHA-256 hashes, revocable one by one (logout) and expiring after ``token_ttl_s``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from collections.abc import Callable
from datetime import timedelta

from aiohttp import web
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from vidsync.errors import ApiError, bad_request, unauthorized
from vidsync.server import cookies
from vidsync.server.http import (
    SPACE,
    current_user,
    json_response,
    read_json,
    services,
    token_hash,
)
from vidsync.server.ratelimit import LoginGuard
from vidsync.store import Store, User
from vidsync.store.base import utcnow

# Explicit classes (not \s), so this means the same as the OpenAPI document's pattern everywhere.
EMAIL_RE = re.compile(r"[^@ \t\n\r\f\v]+@[^@ \t\n\r\f\v]+\.[^@ \t\n\r\f\v]+")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_NAME = 200


def password_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's default (RFC 9106 low-memory) parameters.

    ``VIDSYNC_TEST_CHEAP_HASHES=1`` switches to its cheapest profile, which exists for tests: a
    fuzzing run logs in hundreds of times, at ~0.5 s of CPU each with the real parameters. Never
    set it in production; a hash made with it is upgraded at the next login without it."""
    if os.environ.get("VIDSYNC_TEST_CHEAP_HASHES") == "1":
        logging.getLogger("vidsync.server").warning(
            "VIDSYNC_TEST_CHEAP_HASHES=1: passwords are hashed with test-only parameters")
        return PasswordHasher.from_parameters(profiles.CHEAPEST)
    return PasswordHasher()


class Auth:
    def __init__(self, store: Store, token_ttl_s: int, attempts: int, window_s: float,
                 client_address: Callable[[web.Request], str]) -> None:
        self.store = store
        self.token_ttl = timedelta(seconds=token_ttl_s)
        self.hasher = password_hasher()
        self.guard = LoginGuard(attempts, window_s)
        self.client_address = client_address
        # A hash to verify against when the email is unknown, so timing does not reveal accounts.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))

    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify_password(self, stored: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def issue_token(self, user: User) -> str:
        token = secrets.token_urlsafe(32)
        await self.store.create_token(user.id, token_hash(token), utcnow() + self.token_ttl)
        return token

    async def authenticate(self, token: str) -> tuple[User, str] | None:
        digest = token_hash(token)
        user = await self.store.user_by_token(digest, utcnow())
        return None if user is None else (user, digest)

    @staticmethod
    def check_rate(wait: float) -> None:
        if wait > 0:
            raise ApiError(429, "rate_limited",
                           f"too many attempts; try again in {int(wait) + 1} s",
                           retry_after_s=int(wait) + 1)


def _credentials(body: object) -> tuple[str, str]:
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object", code="invalid_body")
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not EMAIL_RE.fullmatch(email.strip(SPACE)) or len(email) > 320:
        raise bad_request("'email' must be an email address", code="invalid_email")
    if not isinstance(password, str) or not password:
        raise bad_request("'password' is required", code="invalid_password")
    if len(password) > MAX_PASSWORD:
        raise bad_request(f"'password' is longer than {MAX_PASSWORD} characters",
                          code="invalid_password")
    return email.strip(SPACE).lower(), password


async def register(request: web.Request) -> web.Response:
    svc = services(request)
    address = svc.auth.client_address(request)
    svc.auth.check_rate(svc.auth.guard.wait_register(address))
    body = await read_json(request)
    email, password = _credentials(body)
    cookie = _wants_cookie(request, body)
    if len(password) < MIN_PASSWORD:
        raise bad_request(f"'password' must be at least {MIN_PASSWORD} characters",
                          code="invalid_password")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise bad_request(f"'name' must be a string of at most {MAX_NAME} characters",
                          code="invalid_name")
    name = name or email.split("@")[0]
    svc.auth.guard.registered(address)
    user = await svc.store.create_user(email, name.strip(SPACE), await svc.auth.hash_password(password))
    if user is None:
        raise ApiError(409, "email_taken", "an account with this email already exists")
    return await _signed_in(request, user, 201, cookie)


def _wants_cookie(request: web.Request, body: object) -> bool:
    """``{"cookie": true}``: the web UI's login. Refused unless the request comes from the
    server's own pages, so no other site can log a visitor in (to the other site's account)."""
    wanted = body.get("cookie", False) if isinstance(body, dict) else False
    if not isinstance(wanted, bool):
        raise bad_request("'cookie' must be true or false", code="invalid_body")
    if wanted and not cookies.request_is_from_our_pages(request):
        raise ApiError(403, "cross_origin", "a cookie session is only for the server's own "
                       f"pages: a same-origin request with '{cookies.CSRF_HEADER}'")
    return wanted


async def _signed_in(request: web.Request, user: User, status: int, cookie: bool) -> web.Response:
    """A new token for ``user``: in the body, or as the session cookie if that was asked for."""
    svc = services(request)
    token = await svc.auth.issue_token(user)
    if not cookie:
        return json_response({"token": token, "user": user.to_json()}, status=status)
    response = json_response({"user": user.to_json()}, status=status)
    cookies.set_session(response, request, token, int(svc.auth.token_ttl.total_seconds()))
    return response


async def login(request: web.Request) -> web.Response:
    svc = services(request)
    address = svc.auth.client_address(request)
    body = await read_json(request)
    email, password = _credentials(body)
    cookie = _wants_cookie(request, body)
    svc.auth.check_rate(svc.auth.guard.wait_login(email, address))
    found = await svc.store.user_by_email(email)
    if found is None:
        await svc.auth.verify_password(svc.auth._dummy_hash, password)
        ok = False
    else:
        ok = await svc.auth.verify_password(found[1], password)
    if not ok:
        svc.auth.guard.failed(email, address)
        raise unauthorized("wrong email or password")
    svc.auth.guard.succeeded(email, address)
    user, stored = found
    if svc.auth.hasher.check_needs_rehash(stored):
        await svc.store.set_password_hash(user.id, await svc.auth.hash_password(password))
    return await _signed_in(request, user, 200, cookie)


async def logout(request: web.Request) -> web.Response:
    await current_user(request)
    svc = services(request)
    digest = request["token_hash"]
    await svc.store.revoke_token(digest)
    svc.disconnect_token(digest)
    response = web.Response(status=204)
    if cookies.COOKIE in request.cookies:
        cookies.clear_session(response, request)
    return response


async def me(request: web.Request) -> web.Response:
    user = await current_user(request)
    return json_response({"user": user.to_json()})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/auth/register", register)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_get("/api/auth/me", me)
