"""The web UI: the built single-page app, with every non-API path falling back to index.html.

The fallback route must not match ``/api`` or ``/socket.io`` paths: there, an unknown path is the
API's JSON 404 and a wrong method is a 405 whose ``Allow`` lists only the route's own methods
(aiohttp adds every method of every resource whose path matches, so a GET catch-all would
advertise GET on each API path).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"

NOT_BUILT = """<!doctype html><meta charset=utf-8><title>Vidsync</title>
<p>The web UI is not built. Run <code>make serve</code> (or <code>npm ci && npm run build</code>
in <code>web/</code>). The API is at <code>/api/</code>, its description at
<a href="/api/openapi.json">/api/openapi.json</a>.</p>"""


async def index(request: web.Request) -> web.StreamResponse:
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        return web.Response(text=NOT_BUILT, content_type="text/html")
    return web.FileResponse(page, headers={"Cache-Control": "no-cache"})


async def spa_fallback(request: web.Request) -> web.StreamResponse:
    tail = request.match_info["tail"]
    candidate = (STATIC_DIR / tail).resolve()
    if tail and candidate.is_file() and candidate.is_relative_to(STATIC_DIR):
        return web.FileResponse(candidate, headers={
            "Cache-Control": "public, max-age=31536000, immutable"
            if tail.startswith("assets/") else "no-cache"})
    return await index(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get(r"/{tail:(?!(?:api|socket\.io)(?:/|$)).*}", spa_fallback)
