"""The autoscaler daemon on the test bed: a real kube-apiserver, controller-manager
(ReplicaSets), kube-scheduler and kwok pods that honour the gpusched.io/serving
readiness gate; a real Prometheus scraping the fleet simulator (benchmarks/fleet:
simulated vLLM servers per pod, queueing driven by the request load the test sets).

(a) a burst promotes the warm replica first (Ready about a second after the gate
    flips, no cold start) and the pool refills; (b) back down after the (short)
    stabilisation window, keeping the oldest serving pod in traffic; (c) Prometheus
    stopped mid-run: replicas hold, condition and Event say why; (d) two daemons:
    only the leader acts, and the other takes over within the lease duration when it
    is killed; (e) bad input: a missing Deployment, a PromQL syntax error, a
    Prometheus that answers HTML or times out: condition + Event, nothing touched.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autoscaler import signals
from benchmarks.chaos.cases import metric_total
from benchmarks.fleet.driver import Load
from benchmarks.testbed.cluster import free_port, terminate_all
from benchmarks.testbed.crd import GROUP, PLURAL, VERSION, install_crd
from scheduler import contract
from scheduler.kube.client import raw
from scheduler.kube.watch import Informer
from tests.helpers import eventually, gpu_deployment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = "org/model"
COLD_START = "5s"  # kwok's time to ContainersReady for a new pod of these tests


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def crd(cluster):
    return install_crd(cluster.api_client())


@pytest.fixture
def fleet(cluster, prom):
    """start(namespace, rate) -> Load: the fleet simulator for the namespace's `app=llm`
    pods, replicas of 4 concurrent requests (about 4.5 req/s each at 100+50 tokens)."""
    from benchmarks.fleet.exporter import FleetSimulator, Workload
    from benchmarks.fleet.model import ServiceModel

    running: list = []

    def start(ns: str, rate: float = 0.0, selector: str = "app=llm") -> Load:
        w = Workload(ns, selector, MODEL, None, ServiceModel(max_batch=4))
        sim = FleetSimulator(cluster.api_client(), [w], prometheus=prom).start()
        load = Load(sim, w, rate)
        running.append((sim, load))
        return load

    yield start
    for sim, load in running:
        load.stop()
        sim.stop()


@pytest.fixture
def api(cluster):
    return cluster.api_client()


class PodTimeline:
    """Wall-clock times at which the watch first showed each pod's conditions True,
    and whether a pod ever left Ready after entering it."""

    def __init__(self, api, namespace: str):
        self.first: dict[tuple[str, str], float] = {}
        self.lost_ready: set[str] = set()
        self._ready: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.inf = Informer(api, f"/api/v1/namespaces/{namespace}/pods", self._on,
                            on_relist=lambda items: [self._on("ADDED", p) for p in items], name="timeline").start()

    def _on(self, typ, pod):
        now = time.time()
        name = pod["metadata"]["name"]
        conds = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
        with self._lock:
            for what, ctype in (("serving", contract.SERVING_GATE), ("ready", "Ready"), ("loaded", "ContainersReady")):
                if conds.get(ctype) == "True":
                    self.first.setdefault((name, what), now)
            ready = conds.get("Ready") == "True"
            if self._ready.get(name) and not ready and not pod["metadata"].get("deletionTimestamp") and typ != "DELETED":
                self.lost_ready.add(name)
            self._ready[name] = ready

    def stop(self):
        self.inf.stop()


class InProcess:
    """An Autoscaler running in a thread of the test process."""

    def __init__(self, api, prometheus_url: str, namespace: str, on_decision=None, **kw):
        from autoscaler.daemon import Autoscaler, Config
        cfg = Config(prometheus_url=prometheus_url, interval_s=1.0, namespace=namespace, watch_namespace=namespace,
                     identity=f"test-{namespace}"[:60], metrics_port=0, lease_duration_s=3.0,
                     prometheus_timeout_s=1.0, demote_wait_s=3.0, **kw)
        self.daemon = Autoscaler(api, cfg, on_decision=on_decision)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.daemon.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_event.set()
        self.thread.join(15)


@pytest.fixture
def run_daemon(api):
    started: list[InProcess] = []

    def start(prometheus_url, namespace, **kw):
        d = InProcess(api, prometheus_url, namespace, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


# ---------------------------------------------------------------- helpers

def ias_body(name, target="llm", **spec):
    s = {"scaleTargetRef": {"name": target}, "minReplicas": 1, "maxReplicas": 6,
         "signals": [{"type": "queueDepth", "target": 5}]}
    s.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceAutoscaler", "metadata": {"name": name}, "spec": s}


def create_ias(crd, ns, body):
    return crd.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


def get_ias(crd, ns, name):
    return crd.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def ias_condition(crd, ns, name, type_):
    for c in (get_ias(crd, ns, name).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return None


def events(api, ns, reason=None, name=None):
    _, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/events")
    out = [e for e in body["items"] if e["involvedObject"].get("kind") == "InferenceAutoscaler"]
    if reason:
        out = [e for e in out if e["reason"] == reason]
    if name:
        out = [e for e in out if e["involvedObject"]["name"] == name]
    return out


def pods_json(api, ns, selector="app=llm"):
    _, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/pods", query={"labelSelector": selector})
    return [p for p in body["items"] if not p["metadata"].get("deletionTimestamp")]


def cond(pod, type_):
    return next((c["status"] for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def pool(api, ns):
    """(serving&Ready, warm = loaded & not serving, all live) pod names."""
    pods = pods_json(api, ns)
    ready = sorted(p["metadata"]["name"] for p in pods if cond(p, "Ready") == "True"
                   and cond(p, contract.SERVING_GATE) == "True")
    warm = sorted(p["metadata"]["name"] for p in pods if cond(p, "ContainersReady") == "True"
                  and cond(p, contract.SERVING_GATE) != "True" and cond(p, "Ready") != "True")
    return ready, warm, sorted(p["metadata"]["name"] for p in pods)


def deployment(apps, ns, name="llm", replicas=2, gated=True, delay=COLD_START):
    body = gpu_deployment(name, replicas, annotations={contract.READY_DELAY: delay, contract.MODEL: MODEL},
                          readiness_gates=[contract.SERVING_GATE] if gated else None)
    apps.create_namespaced_deployment(ns, body)


def replicas_of(apps, ns, name="llm"):
    return apps.read_namespaced_deployment(name, ns).spec.replicas


def wait_scraped(prom, ns, timeout=20):
    eventually(lambda: prom.query(f'vllm:num_requests_waiting{{namespace="{ns}"}}'), timeout=timeout,
               what=f"fleet metrics of {ns} in Prometheus")


# ---------------------------------------------------------------- (a) + (b)

def test_burst_promotes_warm_refills_pool_then_scales_down(cluster, crd, apps, api, namespace, prom, fleet,
                                                           run_daemon):
    ns = namespace
    window = 6
    timeline = PodTimeline(api, ns)
    decisions: list[tuple[float, int, int]] = []  # (time, largest recommendation, replicas decided)
    try:
        deployment(apps, ns, replicas=2)
        create_ias(crd, ns, ias_body("llm", warmReplicas=1, maxReplicas=8, behavior={
            "scaleDown": {"stabilizationWindowSeconds": window, "periodSeconds": 5},
            "panic": {"stableWindowSeconds": 4}}))
        load = fleet(ns, rate=1.0)  # 1 req/s: one replica (about 4.5 req/s) keeps the queue empty
        run_daemon(prom.url, ns, on_decision=lambda key, now, obs, d: decisions.append(
            (now, max([r.replicas for r in d.recommendations] or [d.current]), d.replicas)))
        # start: the daemon promotes one pod (minReplicas) while both load; the other stays warm
        eventually(lambda: (lambda r, w, a: len(r) == 1 and len(w) == 1)(*pool(api, ns)), timeout=30,
                   what="1 serving + 1 warm")
        first_serving, warm_pod = pool(api, ns)[0][0], pool(api, ns)[1][0]
        wait_scraped(prom, ns)

        # (a) burst: 11 req/s on one replica: the queue grows ~6.5/s; past 5 waiting per replica the
        # warm pod is promoted, cold replicas follow as the queue keeps growing, the pool refills
        t_burst = time.time()
        load.set_rate(11.0)
        eventually(lambda: (warm_pod, "ready") in timeline.first, timeout=15, what="the warm pod promoted and Ready")
        flip = timeline.first[(warm_pod, "serving")]
        ready_at = timeline.first[(warm_pod, "ready")]
        promotion_s = ready_at - flip
        burst_to_ready_s = ready_at - t_burst
        print(f"\npromotion: gate True -> Ready {promotion_s * 1000:.0f} ms; burst -> Ready {burst_to_ready_s:.1f} s")
        assert timeline.first[(warm_pod, "loaded")] < t_burst  # it was loaded before: no cold start
        assert promotion_s < 2.0, f"promoted pod took {promotion_s:.1f}s to become Ready"
        assert burst_to_ready_s < 5.0  # queue build-up + scrape (1 s) + tick (1 s) + promotion; a cold start is 5 s

        # the recent arrival rate's query (signals.read_arrival_rate over --recent-window, here twice this
        # Prometheus's 1 s scrape; this daemon has no slo, so it reads neither rate): over 2 s, vLLM's
        # arrivals sees the step to 11 req/s while the 1 m rate still averages the minute before it
        client = signals.connect(prom.url)

        def recent_leads():
            minute = signals.read_arrival_rate(client, "vllm", signals.Scope(namespace=ns), None).value
            recent = signals.read_arrival_rate(client, "vllm", signals.Scope(namespace=ns), None,
                                               window_s=2.0).value
            return minute is not None and recent is not None and recent > 6 and recent > minute + 3 and (minute, recent)
        minute, recent = eventually(recent_leads, timeout=10, what="the 2 s arrival rate above the 1 m rate")
        print(f"arrivals in the burst: {recent:.1f} req/s over 2 s, {minute:.1f} over 1 m")

        def refilled():
            ready, warm, live = pool(api, ns)
            desired = (get_ias(crd, ns, "llm").get("status") or {}).get("desiredReplicas", 0)
            new_warm = [p for p in warm if p not in (first_serving, warm_pod)]
            # the pool's target is min(warmReplicas, max - desired): nothing to refill at the cap,
            # which a slow machine reaches when the queue grows faster than replicas start
            pool_target = min(1, 8 - desired)
            return (len(ready) >= 2 and (new_warm or pool_target == 0)
                    and replicas_of(apps, ns) == desired + pool_target and (ready, warm, desired))
        ready, warm, desired = eventually(refilled, timeout=30, what="a new warm pod while >= 2 serve")
        print(f"burst: {desired} serving decided, pool refilled with {warm}")
        assert desired >= 2 and events(api, ns, "SuccessfulRescale")

        # (b) back to 1 req/s: the queue drains, and after the stabilisation window: 1 serving + 1 warm
        load.set_rate(1.0)
        t_end = time.time()
        eventually(lambda: (lambda r, w, a: len(r) == 1 and len(w) == 1 and len(a) == 2)(*pool(api, ns)),
                   timeout=60, what="1 serving + 1 warm again")
        print(f"back to 1 serving + 1 warm {time.time() - t_end:.1f} s after the burst ended (window {window} s)")
        assert replicas_of(apps, ns) == 2
        assert pool(api, ns)[0] == [first_serving]  # demote-then-shrink kept the oldest serving pod
        assert first_serving not in timeline.lost_ready
        # the live loop honoured the window: the first decision for 1 came >= window after the last
        # recommendation above 1 (less one tick of sampling)
        t_up = next(t for t, _, n in decisions if t > t_burst and n > 1)
        t_one = next(t for t, _, n in decisions if t > t_up and n == 1)
        t_high = max(t for t, rec, _ in decisions if t < t_one and rec > 1)
        assert t_one - t_high >= window - 1.0, (t_one - t_high, decisions[-20:])
        eventually(lambda: get_ias(crd, ns, "llm")["status"]["desiredReplicas"] == 1, timeout=10)
    finally:
        timeline.stop()


# ---------------------------------------------------------------- (c)

def test_prometheus_stopped_holds_replicas(cluster, crd, apps, api, namespace, prom, fleet, run_daemon):
    """Concurrency as the signal (requests running per replica, averaged by a PromQL
    query): 10 req/s keep about 9 requests running; target 2.5 per replica -> 4
    replicas. Prometheus stops: a zero would mean 1 replica within the 2 s window."""
    ns = namespace
    deployment(apps, ns, replicas=3, gated=False, delay="500ms")
    query = f'avg(vllm:num_requests_running{{namespace="{ns}",pod!=""}})'
    create_ias(crd, ns, ias_body("llm", signals=[{"type": "promql", "target": 2.5, "query": query}],
                                 behavior={"scaleDown": {"stabilizationWindowSeconds": 2}}))
    fleet(ns, rate=10.0)
    wait_scraped(prom, ns)
    run_daemon(prom.url, ns)

    def steady():
        st = get_ias(crd, ns, "llm").get("status") or {}
        known = {c["type"]: c["status"] for c in st.get("conditions") or []}.get("SignalsKnown") == "True"
        return known and st.get("desiredReplicas") == replicas_of(apps, ns) >= 2 and st["desiredReplicas"]
    held = eventually(steady, timeout=30, what="a steady decision on known signals")
    try:
        prom.stop()
        t_stop = time.time()
        held = replicas_of(apps, ns)
        c = eventually(lambda: (lambda c: c if c and c["status"] == "False" else None)(
            ias_condition(crd, ns, "llm", "SignalsKnown")), timeout=10, what="SignalsKnown False")
        assert c["reason"] == "PrometheusUnreachable", c
        assert "holding replicas" in c["message"]
        assert events(api, ns, "PrometheusUnreachable")
        while time.time() < t_stop + 6:  # 3x the scale-down window
            assert replicas_of(apps, ns) == held
            time.sleep(0.5)
        st = get_ias(crd, ns, "llm")["status"]
        assert st["desiredReplicas"] == held and st["lastDecision"]["rule"] == "unknownHold"
        print(f"\nPrometheus stopped: held {held} replicas for 6 s, SignalsKnown=False {c['reason']}")
    finally:
        prom.start()
    eventually(lambda: (ias_condition(crd, ns, "llm", "SignalsKnown") or {}).get("status") == "True", timeout=30,
               what="signals known again after Prometheus restarted")


# ---------------------------------------------------------------- (d)

def _lease_holder(api, ns):
    status, lease = raw(api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/gpusched-autoscaler")
    return (lease.get("spec") or {}).get("holderIdentity") if status == 200 else None


def test_two_daemons_only_the_leader_acts_and_the_other_takes_over(cluster, crd, apps, api, namespace, prom, fleet,
                                                                    tmp_path):
    ns = namespace
    lease_s = 3
    deployment(apps, ns, replicas=2)
    create_ias(crd, ns, ias_body("llm", warmReplicas=1, maxReplicas=8))
    load = fleet(ns, rate=1.0)
    procs, ports = {}, {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for ident in ("as-a", "as-b"):
        ports[ident] = free_port()
        log = open(tmp_path / f"{ident}.log", "wb")
        procs[ident] = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "--kubeconfig", str(cluster.kubeconfig), "--prometheus-url", prom.url,
             "--interval", "1", "--namespace", ns, "--watch-namespace", ns, "--identity", ident,
             "--lease-duration", str(lease_s), "--metrics-port", str(ports[ident]), "--metrics-addr", "127.0.0.1",
             "--prometheus-timeout", "1"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        leader = eventually(lambda: _lease_holder(api, ns), timeout=20, what="a Lease holder")
        follower = "as-b" if leader == "as-a" else "as-a"
        eventually(lambda: (lambda r, w, a: len(r) == 1 and len(w) == 1)(*pool(api, ns)), timeout=30,
                   what="1 serving + 1 warm")
        wait_scraped(prom, ns)
        load.set_rate(11.0)  # the queue grows on one replica: the leader scales up
        eventually(lambda: replicas_of(apps, ns) >= 3, timeout=15, what="scaled up")
        rescale = events(api, ns, "SuccessfulRescale")
        assert rescale and {e["reportingInstance"] for e in rescale} == {leader}
        assert metric_total(ports[leader], "gpusched_autoscaler_leader") == 1
        assert metric_total(ports[follower], "gpusched_autoscaler_leader") == 0
        assert not metric_total(ports[follower], "gpusched_autoscaler_decisions_total")  # decided nothing
        assert metric_total(ports[leader], "gpusched_autoscaler_decisions_total") > 0
        eventually(lambda: len(pool(api, ns)[0]) >= 2, timeout=30, what=">= 2 serving")

        # kill the leader without a chance to release the Lease
        procs[leader].send_signal(signal.SIGKILL)
        t_kill = time.time()
        eventually(lambda: _lease_holder(api, ns) == follower, timeout=lease_s + 5, interval=0.05,
                   what="the follower holds the Lease")
        takeover_s = time.time() - t_kill
        print(f"\ntakeover {takeover_s:.1f} s after SIGKILL (lease {lease_s} s)")
        assert takeover_s <= lease_s + 5.0  # liveness on 2 loaded cores; the figure is printed above
        # the new leader acts: a bigger burst
        before = replicas_of(apps, ns)
        load.set_rate(40.0)
        eventually(lambda: any(e["reportingInstance"] == follower for e in events(api, ns, "SuccessfulRescale")),
                   timeout=15, what="a decision by the new leader")
        # its first decision may trim an overshoot; the 40/s queue then makes it scale up
        eventually(lambda: replicas_of(apps, ns) > before, timeout=45, what="the new leader scaled up")
    finally:
        terminate_all(procs.values())


# ---------------------------------------------------------------- (e)

def _untouched(apps, api, ns, name="plain", replicas=2, generation=None):
    dep = apps.read_namespaced_deployment(name, ns)
    assert dep.spec.replicas == replicas
    if generation is not None:
        assert dep.metadata.generation == generation
    assert all(cond(p, contract.SERVING_GATE) is None for p in pods_json(api, ns, f"app={name}"))
    return dep.metadata.generation


def test_bad_input_missing_deployment_and_promql_syntax_error(cluster, crd, apps, api, namespace, prom, run_daemon):
    ns = namespace
    deployment(apps, ns, name="plain", replicas=2, gated=False, delay="500ms")
    gen = eventually(lambda: apps.read_namespaced_deployment("plain", ns).status.ready_replicas == 2
                     and apps.read_namespaced_deployment("plain", ns).metadata.generation, timeout=20)
    create_ias(crd, ns, ias_body("missing", target="nope"))
    create_ias(crd, ns, ias_body("badq", target="plain",
                                 signals=[{"type": "promql", "target": 5, "query": "sum(vllm:num_requests_waiting) +"}]))
    run_daemon(prom.url, ns)
    c = eventually(lambda: ias_condition(crd, ns, "missing", "Ready"), timeout=15, what="a Ready condition")
    assert (c["status"], c["reason"]) == ("False", "TargetNotFound") and "nope" in c["message"]
    assert ias_condition(crd, ns, "missing", "AbleToScale")["reason"] == "TargetNotFound"
    ev = eventually(lambda: events(api, ns, "TargetNotFound", "missing"), timeout=10)
    assert ev[0]["type"] == "Warning" and "not found" in ev[0]["message"]
    c = eventually(lambda: ias_condition(crd, ns, "badq", "SignalsKnown"), timeout=15, what="SignalsKnown")
    assert (c["status"], c["reason"]) == ("False", "InvalidQuery") and "parse error" in c["message"], c
    ev = eventually(lambda: events(api, ns, "InvalidQuery", "badq"), timeout=10)
    assert "bad_data" in ev[0]["message"]
    time.sleep(3)  # a few more ticks
    _untouched(apps, api, ns, generation=gen)
    assert [d.metadata.name for d in apps.list_namespaced_deployment(ns).items] == ["plain"]
    assert "currentReplicas" not in (get_ias(crd, ns, "missing").get("status") or {})


class _BadPrometheus:
    def __init__(self, kind: str):
        class H(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if kind == "timeout":
                    time.sleep(3)
                body = b"<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>"
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            do_POST = do_GET

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("kind,reason", [("html", "PrometheusBadResponse"), ("timeout", "PrometheusTimeout")])
def test_bad_prometheus(cluster, crd, apps, api, namespace, run_daemon, kind, reason):
    ns = namespace
    bad = _BadPrometheus(kind)
    try:
        deployment(apps, ns, name="plain", replicas=2, gated=False, delay="500ms")
        gen = eventually(lambda: apps.read_namespaced_deployment("plain", ns).status.ready_replicas == 2
                         and apps.read_namespaced_deployment("plain", ns).metadata.generation, timeout=20)
        create_ias(crd, ns, ias_body("llm", target="plain"))
        run_daemon(bad.url, ns)
        c = eventually(lambda: ias_condition(crd, ns, "llm", "SignalsKnown"), timeout=15, what="SignalsKnown")
        assert (c["status"], c["reason"]) == ("False", reason), c
        ev = eventually(lambda: events(api, ns, reason, "llm"), timeout=10)
        assert ev[0]["type"] == "Warning"
        st = get_ias(crd, ns, "llm")["status"]
        assert st["lastDecision"]["rule"] == "unknownHold" and st["desiredReplicas"] == 2
        time.sleep(2)
        _untouched(apps, api, ns, generation=gen)
    finally:
        bad.close()


# ---------------------------------------------------------------- pre-warming

def test_prewarm_asks_the_nodes_where_replicas_would_land(cluster, api, core):
    """The adapter on the real Nodes: a model cached on one node; 3 future replicas of
    8 GPUs each go there first, then to two other nodes, which are asked to prefetch."""
    from autoscaler.prewarm import Prewarmer
    from scheduler.nodeinfo import CachedModel, encode_models

    model = "org/prewarm-it"
    cached = "gpu-node-0002"
    before = {n.metadata.name: dict(n.metadata.annotations or {}) for n in core.list_node().items}
    core.patch_node(cached, {"metadata": {"annotations": {
        contract.MODEL_CACHE: encode_models([CachedModel(model, 16 << 30, "disk")])}}})
    dep = {"spec": {"template": gpu_deployment("x", 1, gpus=8)["spec"]["template"]}}
    try:
        p = Prewarmer(api, stale_after_s=1e9)  # the test bed's node reports are written once
        res = p.prewarm(dep, model, 3, horizon_s=45)
        assert [pl.node for pl in res.choice.placements][0] == cached
        assert len(res.asked) == 2 and cached not in res.asked, res.choice.reason
        for n in res.asked:
            entries = json.loads(core.read_node(n).metadata.annotations[contract.PREFETCH])
            assert {"model": model} in entries
        assert p.prewarm(dep, model, 3, horizon_s=45) is None  # once per cold-start horizon
    finally:
        for name, ann in before.items():
            core.patch_node(name, {"metadata": {"annotations": {
                contract.PREFETCH: ann.get(contract.PREFETCH), contract.MODEL_CACHE: ann.get(contract.MODEL_CACHE)}}})
