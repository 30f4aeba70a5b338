"""The operators' port shared by the node agent and the autoscaler: /metrics with content
negotiation, health paths answering 200/503 from the daemon's own check, 404 elsewhere."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from scheduler.ops_http import port_arg, serve_ops

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def get(url: str, accept: str = "") -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def served():
    registry = CollectorRegistry()
    Counter("ops_probe_events", "Events.", registry=registry).inc(3)
    state = [(True, "ok (leader)")]
    server = serve_ops(registry, 0, "127.0.0.1", health=lambda: state[0], health_paths=("/healthz", "/readyz"))
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


# (case, path, Accept, health, code, Content-Type starts with, body holds)
ROWS = [
    ("metrics-text", "/metrics", "", (True, "ok"), 200, "text/plain; version=0.0.4", "ops_probe_events_total 3.0"),
    ("metrics-openmetrics", "/metrics", OPENMETRICS, (True, "ok"), 200, "application/openmetrics-text",
     "# EOF"),
    ("metrics-ignore-query", "/metrics?x=1", "", (True, "ok"), 200, "text/plain", "ops_probe_events_total"),
    ("healthz-ok", "/healthz", "", (True, "ok (leader)"), 200, "text/plain", "ok (leader)\n"),
    ("readyz-ok", "/readyz", "", (True, "ok (follower)"), 200, "text/plain", "ok (follower)\n"),
    ("healthz-bad", "/healthz", "", (False, "no tick yet"), 503, "text/plain", "no tick yet\n"),
    ("metrics-while-unhealthy", "/metrics", "", (False, "no tick yet"), 200, "text/plain", "ops_probe_events"),
    ("unknown", "/debug", "", (True, "ok"), 404, "text/plain", "try /metrics or /healthz or /readyz"),
]


@pytest.mark.parametrize("path, accept, health, code, ctype, body", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_ops_port(served, path, accept, health, code, ctype, body):
    base, state = served
    state[0] = health
    got_code, got_ctype, got_body = get(base + path, accept)
    assert (got_code, got_ctype.startswith(ctype), body in got_body) == (code, True, True), (got_ctype, got_body)


def test_without_a_check_health_is_200_and_only_the_named_paths_answer():
    server = serve_ops(CollectorRegistry(), 0, "127.0.0.1")
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert get(base + "/healthz")[::2] == (200, "ok\n")
        assert get(base + "/readyz")[0] == 404  # the agent serves /healthz alone
    finally:
        server.shutdown()
        server.server_close()


# (text, port or None for a usage error)
PORTS = [("0", 0), ("9401", 9401), ("65535", 65535), ("65536", None), ("-1", None), ("http", None), ("", None)]


@pytest.mark.parametrize("text, port", PORTS, ids=[r[0] or "empty" for r in PORTS])
def test_port_arg(text, port):
    import argparse
    if port is None:
        with pytest.raises(argparse.ArgumentTypeError, match="use a port number"):
            port_arg(text)
    else:
        assert port_arg(text) == port
