"""/healthz, /readyz and /metrics on one node: the numbers follow what the node does."""

from __future__ import annotations

import json

import httpx
import pytest
from harness import Api, ServerProcess
from prometheus_client.parser import text_string_to_metric_families

from cluster.helpers import Subscriber, post, wait_until

FILES_UPDATE = "/api/projects/{project_id}/files/update"


def samples(url: str, headers: dict | None = None) -> dict[tuple[str, tuple], float]:
    r = httpx.get(url + "/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(url: str, name: str, **labels: str) -> float:
    return samples(url).get((name, tuple(sorted(labels.items()))), 0.0)


class RawPollingClient:
    """An Engine.IO polling session that subscribes and then never polls: a stalled consumer."""

    def __init__(self, url: str, token: str, project_id: str) -> None:
        self.http = httpx.Client(base_url=url + "/socket.io/", timeout=10)
        opened = self.http.get("", params={"EIO": "4", "transport": "polling"}).text
        assert opened.startswith("0"), opened
        self.params = {"EIO": "4", "transport": "polling", "sid": json.loads(opened[1:])["sid"]}
        for packet in ("40" + json.dumps({"token": token}),
                       "420" + json.dumps(["subscribe:project", project_id])):
            assert self.http.post("", params=self.params, content=packet).text == "ok"


@pytest.fixture
def node(server_factory) -> ServerProcess:
    return server_factory(["--max-buffer", "4000", "--login-attempts", "1000"])


def test_metrics_follow_connections_posts_deliveries_and_slow_consumers(node: ServerProcess) -> None:
    api = Api(node.url)
    owner, _ = api.register("owner")
    pid = api.project(owner)
    sub = Subscriber(node.url, owner, pid)
    try:
        stalled = RawPollingClient(node.url, owner, pid)
        wait_until(lambda: value(node.url, "vidsync_subscriptions") == 2, 5, "two subscriptions")
        assert value(node.url, "vidsync_connections", transport="websocket") == 1
        assert value(node.url, "vidsync_connections", transport="polling") == 1

        for i in range(3):
            post(api, owner, pid, f"m{i}", n=2)
        sub.wait_for(6)
        m = samples(node.url)
        assert m[("vidsync_events_appended_total", ())] == 6
        assert m[("vidsync_event_deliveries_total", ())] == 6  # 3 batches x 2 subscribers
        assert m[("vidsync_fanout_latency_seconds_count", ())] == 3
        assert m[("vidsync_http_request_duration_seconds_count",
                  (("method", "POST"), ("route", FILES_UPDATE), ("status", "200")))] == 3
        assert m[("vidsync_slow_consumer_drops_total", ())] == 0

        # The stalled client's queue passes --max-buffer: it is dropped, the live one is not.
        for i in range(3, 8):
            post(api, owner, pid, f"m{i}", n=5)
        wait_until(lambda: value(node.url, "vidsync_slow_consumer_drops_total") == 1, 5,
                   "the stalled client to be dropped")
        assert value(node.url, "vidsync_connections", transport="polling") == 0
        assert value(node.url, "vidsync_subscriptions") == 1
        assert sub.wait_for(31) == list(range(1, 32))
        stalled.http.close()
    finally:
        sub.close()


def test_request_latency_is_labelled_by_route_not_by_path(node: ServerProcess) -> None:
    api = Api(node.url)
    token, _ = api.register("reader")
    for _ in range(2):
        assert api.get("/api/projects/does-not-exist", token=token).status_code == 404
    m = samples(node.url)
    key = ("vidsync_http_request_duration_seconds_count",
           (("method", "GET"), ("route", "/api/projects/{project_id}"), ("status", "404")))
    assert m[key] == 2
    assert not any("does-not-exist" in str(labels) for _, labels in m)


def test_health_and_readiness(node: ServerProcess) -> None:
    assert httpx.get(node.url + "/healthz").json()["ok"] is True
    r = httpx.get(node.url + "/readyz")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "checks": {"database": {"ok": True}}}


def test_metrics_token_when_configured(server_factory) -> None:
    node = server_factory(["--metrics-token", "a-long-metrics-scrape-token"])
    r = httpx.get(node.url + "/metrics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert httpx.get(node.url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert samples(node.url, {"Authorization": "Bearer a-long-metrics-scrape-token"})
