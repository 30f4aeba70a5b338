"""The wake path on the test bed: a real kube-apiserver (Deployments, ReplicaSets, kwok
pods), a real Prometheus the daemon queries, and the daemon's activation endpoint on a
loopback port. A POST to /activate/<namespace>/<name> scales a Deployment at zero to
one replica within a tick (the tick here is 30 s: the wake must not wait for it); bad
names, objects that do not exist and objects that did not opt in are refused and
touch nothing; a flood of wakes neither stalls the daemon nor scales past one."""
from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.autoscaler import test_autoscaler_integration as base
from tests.autoscaler.test_autoscaler_integration import create_ias, deployment, get_ias, ias_body, replicas_of
from tests.helpers import eventually

pytestmark = pytest.mark.integration

api, crd = base.api, base.crd

INTERVAL_S = 30.0
ACT = {"labels": {"destination_service_name": "llm"}}


def post(port: int, path: str, method: str = "POST", headers: dict | None = None) -> tuple[int, dict, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), json.loads(r.read() or b"{}")
    finally:
        c.close()


@pytest.fixture
def daemon(api, prom, namespace):
    from autoscaler.daemon import Autoscaler, Config

    cfg = Config(prometheus_url=prom.url, interval_s=INTERVAL_S, namespace=namespace, watch_namespace=namespace,
                 identity=f"wake-{namespace}"[:60], metrics_port=0, lease_duration_s=3.0, prometheus_timeout_s=1.0)
    d = Autoscaler(api, cfg)
    port = d.serve_activation(0, "127.0.0.1")
    stop = threading.Event()
    t = threading.Thread(target=d.run, args=(stop,), daemon=True)
    t.start()
    eventually(lambda: d.is_leader() and d.ias_informer.synced.is_set(), timeout=20, what="the daemon leading")
    yield d, port
    stop.set()
    t.join(15)


def test_post_wakes_a_deployment_at_zero_within_a_tick(cluster, crd, apps, namespace, daemon):
    d, port = daemon
    ns = namespace
    deployment(apps, ns, replicas=0, gated=False, delay="500ms")
    create_ias(crd, ns, ias_body("llm", minReplicas=0, maxReplicas=3, coldStartSeconds=20, activation=ACT))
    # the daemon's informer has it: from then on a wake can name it
    eventually(lambda: d._lookup(ns, "llm"), timeout=10, what="the object in the informer cache")
    ticks = d.ticks
    assert replicas_of(apps, ns) == 0
    t0 = time.monotonic()
    code, headers, body = post(port, f"/activate/{ns}/llm")
    assert code == 503 and headers["Retry-After"] == "20" and body["woken"], body
    eventually(lambda: replicas_of(apps, ns) == 1, timeout=10, what="woken to 1 replica")
    took = time.monotonic() - t0
    assert took < INTERVAL_S / 3, took
    status = eventually(lambda: (get_ias(crd, ns, "llm").get("status") or {}).get("lastDecision"), timeout=10,
                        what="the woken decision in status")
    assert status["rule"] == "activation" and "activation endpoint" in status["reason"], status
    print(f"\nwoken in {took:.2f}s (tick {INTERVAL_S:g}s, {d.ticks - ticks} tick(s) meanwhile): {status['reason']}")
    # a second wake at once: answered alike, not taken (one a second per object)
    code, _, body = post(port, f"/activate/{ns}/llm")
    assert code == 503 and not body["woken"], body


def test_refusals_touch_nothing(cluster, crd, apps, namespace, daemon):
    d, port = daemon
    ns = namespace
    deployment(apps, ns, replicas=0, gated=False, delay="500ms")
    # opted out: minReplicas 1 (its target another Deployment, so the daemon's own scaling is apart)
    deployment(apps, ns, name="steady", replicas=0, gated=False, delay="500ms")
    create_ias(crd, ns, ias_body("steady", target="steady", minReplicas=1, maxReplicas=2))
    create_ias(crd, ns, ias_body("llm", minReplicas=0, maxReplicas=3, activation=ACT))
    eventually(lambda: d._lookup(ns, "llm") and d._lookup(ns, "steady"), timeout=10, what="objects cached")
    cases = [
        ("POST", f"/activate/{ns}/Bad_Name", 400),
        ("POST", f"/activate/{ns}", 400),
        ("POST", f"/activate/{ns}/" + "a" * 300, 400),
        ("GET", f"/activate/{ns}/llm", 405),
        ("POST", f"/activate/{ns}/missing", 404),
        ("POST", "/activate/kube-system/llm", 404),  # a namespace the daemon does not watch
        ("POST", f"/activate/{ns}/steady", 403),
    ]
    for method, path, want in cases:
        code, headers, body = post(port, path, method)
        assert code == want, (path, body)
        assert "Retry-After" not in headers and not body["woken"]
    # ingress-nginx's custom-errors call: the Service in its headers, any path
    for svc, want in (("steady", 403), ("nobody", 404), ("Bad_Svc", 400)):
        code, _, body = post(port, "/v1/completions", "GET",
                             {"X-Code": "503", "X-Namespace": ns, "X-Service-Name": svc})
        assert code == want and not body["woken"], (svc, body)
    assert d.activator.last_wake(f"{ns}/llm") is None and d.activator.last_wake(f"{ns}/steady") is None
    time.sleep(2)
    assert replicas_of(apps, ns) == 0  # nothing woke llm


def test_a_flood_neither_stalls_nor_scales_past_one(cluster, crd, apps, namespace, daemon):
    d, port = daemon
    ns = namespace
    deployment(apps, ns, replicas=0, gated=False, delay="500ms")
    create_ias(crd, ns, ias_body("llm", minReplicas=0, maxReplicas=3, activation=ACT))
    eventually(lambda: d._lookup(ns, "llm"), timeout=10, what="the object in the informer cache")

    def one(i: int) -> int:
        path = f"/activate/{ns}/llm" if i % 2 else f"/activate/{ns}/x{i}"
        try:
            return post(port, path)[0]
        except (OSError, http.client.HTTPException):
            return -1  # closed unanswered: over the connection cap

    t0 = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(one, range(400)))
    took = time.monotonic() - t0
    assert set(codes) <= {503, 404, -1} and codes.count(503) > 0, sorted(set(codes))
    eventually(lambda: replicas_of(apps, ns) == 1, timeout=10, what="woken")
    # the loop still ticks: /healthz's clock; and the object was woken once a second at most
    assert d.healthy()[0], d.healthy()
    time.sleep(2)
    assert replicas_of(apps, ns) == 1
    taken = d.metrics.wakes.labels("503", "true")._value.get()
    print(f"\n400 calls in {took:.2f}s: {codes.count(503)} answered 503, {codes.count(404)} 404, "
          f"{codes.count(-1)} closed; {taken:g} wake(s) taken")
    assert taken <= took + 2
