"""Scale to zero on the test bed: a real Prometheus scrapes a gateway's request counter
(Istio's istio_requests_total, exposed by prometheus_client as Envoy would expose it),
the activation query reads it (scoped to the namespace), and the daemon brings a
Deployment at zero replicas back to one on the first request.

The gateway here is only a counter: Istio itself is not part of the test bed."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from autoscaler import signals
from autoscaler.spec import ActivationSpec
from tests.autoscaler import test_autoscaler_integration as base
from tests.autoscaler.test_autoscaler_integration import (create_ias, deployment, get_ias, ias_body, ias_condition,
                                                          replicas_of)
from tests.helpers import eventually

pytestmark = pytest.mark.integration

# the daemon tests' fixtures, shared
api, crd, run_daemon = base.api, base.crd, base.run_daemon

LABELS = ("destination_service_namespace", "destination_service_name", "response_code")


class Gateway:
    """istio_requests_total by (namespace, service), served for Prometheus to scrape."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter
        self.registry = CollectorRegistry()
        self.requests = Counter("istio_requests", "requests seen by the gateway", LABELS, registry=self.registry)
        gw = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                from prometheus_client import generate_latest
                body = generate_latest(gw.registry)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def request(self, ns: str, svc: str, n: int = 1, code: str = "503") -> None:
        self.requests.labels(ns, svc, code).inc(n)

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def gateway(prom):
    g = Gateway()
    prom.set_targets([([g.address], {"job": "istio-ingressgateway"})])
    yield g
    g.stop()


def _read(prom, act, ns, window="5s"):
    client = signals.connect(prom.url)
    return signals.read_activation(client, act, ns, None, window=window)


def test_activation_query_on_prometheus(prom, gateway, namespace):
    ns = namespace
    act = ActivationSpec(labels=(("destination_service_name", "llm"),))
    # the gateway's own target: the Prometheus data dir may hold other modules' stale targets
    up = 'up{job="istio-ingressgateway"}'
    eventually(lambda: any(r["value"][1] == "1" for r in prom.query(up)), timeout=30, what="the gateway scraped")
    r = _read(prom, act, ns)
    assert r.value is None and "no series" in r.reason  # never asked for: unknown, not idle
    gateway.request("other-ns", "llm", 5)  # another namespace's traffic is not ours
    gateway.request(ns, "other-svc", 5)  # nor another service's
    time.sleep(3)
    assert _read(prom, act, ns).value is None
    gateway.request(ns, "llm", 1)  # born with 1: increase() needs two samples, the `or` branch counts it
    r = eventually(lambda: (lambda r: r if r.value else None)(_read(prom, act, ns)), timeout=10,
                   what="the first request counted")
    assert r.value == 1, r
    # nothing for longer than the 5 s window: 0, known (an idle model, not missing data)
    r = eventually(lambda: (lambda r: r if r.value == 0 else None)(_read(prom, act, ns)), timeout=15,
                   what="the count back to 0")
    assert "0 requests at the gateway" in r.reason


def test_daemon_wakes_a_deployment_at_zero(cluster, crd, apps, api, namespace, prom, gateway, run_daemon):
    ns = namespace
    deployment(apps, ns, replicas=0, gated=False, delay="500ms")
    create_ias(crd, ns, ias_body("llm", minReplicas=0,
                                 activation={"labels": {"destination_service_name": "llm"}}))
    run_daemon(prom.url, ns)
    eventually(lambda: (get_ias(crd, ns, "llm").get("status") or {}).get("lastDecision"), timeout=20,
               what="a first decision")
    # the pods' series are gone at zero, as expected: no SignalsKnown=False, no Warning each tick
    # (the gateway's counter has no series either: it is the one input reported)
    c = eventually(lambda: ias_condition(crd, ns, "llm", "SignalsKnown"), timeout=10, what="SignalsKnown")
    assert "queueDepth" not in c["message"] and "activation" in c["message"], c
    t0 = time.time()
    while time.time() < t0 + 3:  # no request: stays at zero
        assert replicas_of(apps, ns) == 0
        time.sleep(0.5)
    gateway.request(ns, "llm", 1)
    eventually(lambda: replicas_of(apps, ns) == 1, timeout=20, what="woken to 1 replica")
    d = get_ias(crd, ns, "llm")["status"]["lastDecision"]
    print(f"\nwoken from zero: {d['rule']}: {d['reason']}")
