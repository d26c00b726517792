"""Prometheus metrics at ``/metrics`` (prometheus-client, one registry per app).

Counters are bumped where things happen (hub deliveries, commits, closed sessions, requests);
gauges that mirror state (connections, subscriptions, the backplane) are read at scrape time, so
the hot paths pay nothing for them. Set ``--metrics-token`` to require a bearer token; otherwise
keep ``/metrics`` off the public side of the proxy (docs/deployment.md).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from vidsync.errors import unauthorized
from vidsync.realtime.session import Session
from vidsync.server.http import bearer_token
from vidsync.store import Event

if TYPE_CHECKING:
    from vidsync.server.app import Services

METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
# Fan-out is sub-millisecond on one node and a few ms across nodes; long tails matter most.
FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TRANSPORTS = ("websocket", "polling")


class BackplaneCollector(Collector):
    """The backplane's own counters and state, read when Prometheus scrapes."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        bp = self.svc.backplane
        if bp is None:
            return
        yield GaugeMetricFamily("vidsync_backplane_up", "1 while the backplane is subscribed, "
                                "hears heartbeats and can publish", value=int(bp.health()["ok"]))
        yield GaugeMetricFamily("vidsync_backplane_queued", "Messages waiting to be published",
                                value=bp.health()["queued"])
        for name, doc, value in (
                ("published", "Messages published", bp.published),
                ("publish_errors", "Messages that failed to publish", bp.publish_errors),
                ("dropped", "Messages dropped because the publish queue was full", bp.dropped),
                ("received", "Messages received from other nodes", bp.received),
                ("gaps", "Possible losses noticed (a skipped message number, a resubscription, "
                         "a silent subscription)", bp.gaps),
                ("events_refilled", "Events a loss kept from this node, delivered from the store "
                                    "instead", bp.events_refilled)):
            yield CounterMetricFamily(f"vidsync_backplane_{name}", doc, value=value)


class Metrics:
    def __init__(self, svc: Services) -> None:
        self.registry = r = CollectorRegistry()
        sessions = svc.realtime.sessions
        connections = Gauge("vidsync_connections", "Open Socket.IO connections by transport",
                            ["transport"], registry=r)
        for transport in TRANSPORTS:
            connections.labels(transport).set_function(
                lambda t=transport: sum(1 for s in list(sessions.values()) if s.transport_name == t))
        Gauge("vidsync_subscriptions", "Live project subscriptions",
              registry=r).set_function(svc.hub.subscription_count)
        self.appended = Counter("vidsync_events_appended", "Events this node appended to the log",
                                registry=r)
        self.deliveries = Counter("vidsync_event_deliveries", "Live event batches written to a "
                                  "subscriber (one per subscription per batch)", registry=r)
        self.fanout = Histogram("vidsync_fanout_latency_seconds", "From a batch's commit to its "
                                "write to the last local subscriber (wall clock for batches "
                                "committed on another node)", buckets=FANOUT_BUCKETS, registry=r)
        self.slow_drops = Counter("vidsync_slow_consumer_drops", "Connections closed because the "
                                  "client did not read fast enough", registry=r)
        self.requests = Histogram("vidsync_http_request_duration_seconds", "HTTP request latency",
                                  ["method", "route", "status"], registry=r)
        r.register(BackplaneCollector(svc))

    # hooks ---------------------------------------------------------------------------------------

    def on_delivered(self, delivered: int, seconds: float) -> None:
        if delivered:
            self.deliveries.inc(delivered)
            self.fanout.observe(seconds)

    def on_commit(self, project_id: str, events: list[Event]) -> None:
        self.appended.inc(len(events))

    def on_session_closed(self, session: Session) -> None:
        if session.close_reason.startswith("slow consumer"):
            self.slow_drops.inc()

    def middleware(self) -> Callable:
        @web.middleware
        async def timed(request: web.Request, handler: Callable) -> web.StreamResponse:
            start = time.monotonic()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as e:
                status = e.status
                raise
            finally:
                # A WebSocket's "request" lasts as long as the connection: not a latency.
                if not _is_websocket(request):
                    resource = request.match_info.route.resource
                    route = resource.canonical if resource is not None else "unmatched"
                    self.requests.labels(request.method, route, str(status)).observe(
                        time.monotonic() - start)

        return timed


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def install(app: web.Application, svc: Services) -> Metrics:
    """Create the app's metrics, hook them in, and serve them at /metrics."""
    metrics = Metrics(svc)
    app[METRICS] = metrics
    svc.hub.on_delivered = metrics.on_delivered
    svc.on_commit.append(metrics.on_commit)
    svc.realtime.on_session_closed.append(metrics.on_session_closed)
    app.middlewares.insert(0, metrics.middleware())  # outermost: sees the final status
    token = svc.config.metrics_token

    async def serve(request: web.Request) -> web.Response:
        if token is not None:
            given = bearer_token(request) or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise unauthorized("/metrics needs 'Authorization: Bearer <metrics token>'")
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", serve)
    return metrics
