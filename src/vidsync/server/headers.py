"""Browser-side defences on every response: what the web UI's page may load, run and be framed by.

The policy is as strict as the built UI allows: scripts, styles and connections from the page's own
origin only (no inline script or style, no eval); images and media also from ``blob:`` and
``data:`` (thumbnails, a video player fed by Range requests or object URLs). ``connect-src 'self'``
also covers the same origin's ``ws:``/``wss:`` in current browsers (CSP Level 3, Chromium and
Firefox); a browser that disagrees blocks the WebSocket and Socket.IO falls back to long-polling.
"""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "no-referrer",  # URLs carry project ids and download-link tokens
    "X-Content-Type-Options": "nosniff",
}


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def install(app: web.Application) -> None:
    """On every response, streamed ones included, just before its headers go out."""
    app.on_response_prepare.append(_add_security_headers)
