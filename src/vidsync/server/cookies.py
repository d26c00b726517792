"""The web UI's session: its token in an HttpOnly cookie, so no script in the page can read it.

API clients and agents send ``Authorization: Bearer``; the web UI instead asks login or register
for a cookie (``{"cookie": true}``) and never sees the token. A cookie rides along on requests the
page did not mean to make, so it only counts on requests that show they come from the server's
own pages (cross-site request forgery):

- ``SameSite=Strict``: the browser sends it on same-site requests only;
- same-origin only: ``Origin`` is the server's own, or for a GET or HEAD without ``Origin`` (a
  same-origin fetch or ``<video src>``), ``Sec-Fetch-Site: same-origin``. Same-site is not enough:
  another port of the same host is same-site, and cookies ignore ports;
- state-changing methods also need ``Origin`` and an ``X-Requested-With`` header, which no form,
  link or cross-origin request without a CORS preflight can send (and CORS never allows
  credentials here).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "vidsync_session"
CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc == request.host
    return request.method in SAFE_METHODS and request.headers.get("Sec-Fetch-Site") == "same-origin"


def request_is_from_our_pages(request: web.Request) -> bool:
    """Whether a cookie on this request may stand for the user (see the module's docstring)."""
    if not _same_origin(request):
        return False
    return request.method in SAFE_METHODS or (
        "Origin" in request.headers and bool(request.headers.get(CSRF_HEADER)))


def cookie_token(request: web.Request) -> str | None:
    """The session cookie's token, if there is one and this request may use it."""
    token = request.cookies.get(COOKIE)
    if not token or not request_is_from_our_pages(request):
        return None
    return token


def _secure(request: web.Request) -> bool:
    # Behind a TLS-ending proxy the node sees http; the proxy's X-Forwarded-Proto tells. Trusting
    # it blindly is harmless here: a forged "https" only keeps the forger's own cookie off http.
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or proto == "https"


def set_session(response: web.StreamResponse, request: web.Request, token: str,
                max_age_s: int) -> None:
    response.set_cookie(COOKIE, token, max_age=max_age_s, path="/", httponly=True,
                        samesite="Strict", secure=_secure(request))


def clear_session(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict",
                        secure=_secure(request))
