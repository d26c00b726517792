"""``/readyz``: whether this node can do its job now, for a load balancer or an orchestrator.

``/healthz`` (liveness) only says the process answers; ``/readyz`` makes a round trip to the
database and, when a backplane is configured, checks that it is subscribed, hears heartbeats and
can publish. A node that is not ready answers 503 so the balancer sends new clients elsewhere.
The body names the failing check but not its error text, which may carry host names.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from vidsync.server.http import json_response, services

CHECK_TIMEOUT_S = 2.0


async def readyz(request: web.Request) -> web.Response:
    svc = services(request)
    checks: dict[str, dict] = {}
    try:
        # Any query is a round trip; a project that does not exist costs one index probe.
        await asyncio.wait_for(svc.store.last_seq(""), CHECK_TIMEOUT_S)
        checks["database"] = {"ok": True}
    except Exception as e:  # whatever the driver raises, the answer is "not ready"
        checks["database"] = {"ok": False, "error": type(e).__name__}
    if svc.backplane is not None:
        checks["backplane"] = svc.backplane.health()
    ok = all(c["ok"] for c in checks.values())
    return json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/readyz", readyz)
