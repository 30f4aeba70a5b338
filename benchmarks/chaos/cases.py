"""The fault cases. Each takes a running ChaosBed and a size, injects one fault, and
returns a CaseResult: what was checked, what was found, and the figures.

A case never raises for a failed check: it says so in its result (passed=False), so the
bench reports every case and CI asserts on the figures. It raises only when the bed
itself is broken (a TimeoutError while setting up).
"""
from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import requests

from autoscaler.warmpool import pod_view
from benchmarks.chaos.bed import IMAGE, ROOT, ChaosBed, gpu_pod, now_utc, wait_for
from benchmarks.chaos.checks import check_gpus, extender_view_overcommit, gpu_capacity
from benchmarks.testbed.crd import GROUP, PLURAL, VERSION
from scheduler import contract
from scheduler.kube.client import raw

log = logging.getLogger(__name__)

MODEL = "org/chaos-model"
SHARE = "10Gi"  # 7 per 81,079 MiB H100
SHARES_PER_GPU = 7


@dataclass
class CaseResult:
    name: str
    checked: str
    found: str
    passed: bool
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _timed(fn: Callable[..., CaseResult]) -> Callable[..., CaseResult]:
    def wrapper(*a, **kw) -> CaseResult:
        t0 = time.monotonic()
        res = fn(*a, **kw)
        res.seconds = round(time.monotonic() - t0, 1)
        return res
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _binds(g) -> float:
    """Pods the extender has bound so far (its own counter)."""
    try:
        text = g.metrics()
    except Exception:  # noqa: BLE001 - dead or restarting
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("gpusched_extender_decisions_total{") and 'result="bound"' in line
               and 'verb="bind"' in line)


def burst_nodes(pods: int) -> int:
    """Nodes the burst needs with room to spare: a quarter whole GPUs, the rest 10 GiB shares."""
    whole = math.ceil(pods / 4)
    gpus = whole + math.ceil((pods - whole) / SHARES_PER_GPU)
    return max(4, math.ceil(gpus / 8 / 0.7))


# ---------------------------------------------------------------- 1. extender killed mid-burst

@_timed
def extender_killed_during_burst(bed: ChaosBed, pods: int = 1000, down_s: float = 5.0, kill_at: float = 0.3,
                                 timeout: float | None = None, ignorable: bool | None = None,
                                 direct: bool = False) -> CaseResult:
    """SIGKILL the extender when kill_at of the pods are created, keep it down down_s, restart it;
    the burst goes on. Every pod must be bound and no GPU over-committed. ``ignorable``: the
    extender's setting in gpusched's kube-scheduler (None: as deploy/ configures it). ``direct``:
    kube-scheduler calls the extender's port itself instead of through the readiness-gated
    proxy that plays the Service (calls reach the restarted extender before it is Ready)."""
    g = bed.gpusched
    bed.configure(ignorable, direct)
    ign = g.deployed_ignorable() if ignorable is None else ignorable
    variant = (f"ignorable: {str(ign).lower()}" + (" as deployed" if ignorable is None else "")
               + (", called directly, not through a Service" if direct else ""))
    gpus = bed.nodes * 8
    whole = math.ceil(pods / 4)
    need = whole + math.ceil((pods - whole) / SHARES_PER_GPU)
    if need > gpus * 0.9:
        raise ValueError(f"{pods} pods need about {need} GPUs; the bed has {gpus} (use >= {burst_nodes(pods)} nodes)")
    ns = bed.namespace("burst")
    bodies = [gpu_pod(f"burst-{i:05d}", gpus=1) if i % 4 == 0 else gpu_pod(f"burst-{i:05d}", memory=SHARE)
              for i in range(pods)]
    created = [0]
    baseline = _binds(g)

    def on_created(n: int) -> None:
        created[0] = n

    t0 = time.monotonic()
    creator_error: list[BaseException] = []

    def create() -> None:
        try:
            bed.create_pods(ns, bodies, on_created=on_created)
        except BaseException as exc:  # noqa: BLE001 - reported below
            creator_error.append(exc)

    creator = threading.Thread(target=create, name="burst-creator", daemon=True)
    creator.start()
    # kill once the extender has bound kill_at of the burst: mid-flight, binds in progress
    deadline = time.monotonic() + (timeout or 600)
    while _binds(g) - baseline < pods * kill_at and creator.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    bound_at_kill = int(_binds(g) - baseline)
    created_at_kill = created[0]
    # what the Service did before the kill: a case killed at 0 binds says whether it was closed
    service = g.proxy is not None and not direct
    not_ready = [why for at, ready, why in (g.proxy.transitions if service else []) if at >= t0 and not ready]
    bed.cluster.stop_process(f"{g.name}-extender", signal.SIGKILL)
    t_kill = time.monotonic()
    time.sleep(down_s)
    g.start_extender()  # waits for /readyz: the informers have listed again
    down = time.monotonic() - t_kill
    creator.join(timeout or 600)
    if creator_error:
        raise creator_error[0]
    limit = timeout or max(300.0, pods * 0.6)

    def all_bound():
        items = bed.pods(ns)
        return len(items) == pods and all((p.get("spec") or {}).get("nodeName") for p in items)

    try:
        wait_for(all_bound, limit, f"all {pods} burst pods bound", interval=2.0)
    except TimeoutError:
        pass
    elapsed = time.monotonic() - t0
    items = bed.pods(ns)
    bound = sum(1 for p in items if (p.get("spec") or {}).get("nodeName"))
    nodes = bed.list_nodes()
    chk = check_gpus(bed.pods(), gpu_capacity(nodes))
    view = [v for n in nodes for v in extender_view_overcommit(g.debug_node(n["metadata"]["name"]))]
    lost = pods - bound
    passed = lost == 0 and chk.violations == 0 and not view
    found = (f"{bound}/{pods} bound in {elapsed:.0f}s; extender killed after binding {bound_at_kill} "
             f"({created_at_kill} created), down {down:.1f}s; {chk.without_ids} bound by kube-scheduler alone while it was down; "
             + (f"endpoint not ready {len(not_ready)} times before the kill{': ' + not_ready[0] if not_ready else ''}; "
                if service else "") +
             f"{len(chk.double_booked)} GPUs double-booked, {len(chk.node_overcommit)} nodes over-committed, "
             f"{len(view)} GPUs over-committed in the restarted extender's own view")
    if chk.double_booked or chk.node_overcommit or view:
        found += f": {list(chk.double_booked.items())[:3]} {list(chk.node_overcommit.items())[:3]} {view[:3]}"
    figures = {"pods_created": pods, "pods_scheduled": bound, "pods_lost": lost,
               "double_booked": len(chk.double_booked), "nodes_overcommitted": len(chk.node_overcommit),
               "extender_view_overcommitted": len(view), "bound_without_gpu_ids": chk.without_ids,
               "extender_down_s": round(down, 1), "killed_after_created": created_at_kill,
               "bound_at_kill": bound_at_kill, "not_ready_before_kill": len(not_ready) if service else None,
               "pods_per_s": round(bound / elapsed, 1), "ignorable": ign,
               "through_service": not direct}
    bed.delete_namespace(ns)
    bed.configure(None, False)
    return CaseResult(f"extender killed during a burst ({variant})",
                      f"SIGKILL the extender once it has bound {int(kill_at * 100)}% of a burst of {pods} GPU pods "
                      f"(1/4 whole GPUs, 3/4 {SHARE} shares, {bed.nodes} nodes), restart it {down_s:g}s later, "
                      f"{'kube-scheduler calling its port directly' if direct else 'behind a readiness-gated Service'}: "
                      "every pod bound; no GPU id held by two whole-GPU pods, no GPU's shares over its memory, "
                      "no node over its GPUs (API pods) nor any GPU over-committed in the extender's view",
                      found, passed, figures)


# ---------------------------------------------------------------- 2. stale node report

@_timed
def stale_node_report(bed: ChaosBed, pods: int = 24, stale_after_s: float = 300.0) -> CaseResult:
    """One node's agent reports a time an hour old while every other node is fresh. The node
    holds the model the pods ask for (it would be their first choice): none may go there,
    and a pod pinned to it stays Pending with the reason, until a fresh report comes."""
    from benchmarks.testbed.stack import GpuschedScheduler

    names = sorted(n["metadata"]["name"] for n in bed.list_nodes())
    stale = names[-1]
    now = now_utc()
    for n in names:
        bed.set_reported_at(n, now, models={} if n != stale else {MODEL: (16 << 30, "disk")})
    bed.set_reported_at(stale, now - timedelta(hours=1))
    sched = "gpusched-stale"
    g = GpuschedScheduler(bed.cluster, name=sched)
    g.config.write_text(f"staleAfterSeconds: {stale_after_s:g}\nschedulerName: {sched}\n")
    g.start()
    ns = bed.namespace("stale")
    try:
        wait_for(lambda: g.debug_node(stale).get("stale") is True and g.debug_node(names[0]).get("stale") is False
                 and MODEL in g.debug_node(stale).get("models", {}), 60, "the extender sees the stale report")
        ann = {contract.MODEL: MODEL}
        bed.create_pods(ns, [gpu_pod(f"while-stale-{i}", memory=SHARE, scheduler=sched, annotations=ann)
                             for i in range(pods)])
        pin = {"kubernetes.io/hostname": stale}
        bed.create_pods(ns, [gpu_pod("pinned-while-stale", memory=SHARE, scheduler=sched, node_selector=pin)])

        def placed(prefix: str, n: int):
            got = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in bed.pods(ns)
                   if p["metadata"]["name"].startswith(prefix)}
            return got if len(got) == n and all(got.values()) else None

        while_stale = wait_for(lambda: placed("while-stale-", pods), 180, "pods placed while stale")
        on_stale = sorted(k for k, v in while_stale.items() if v == stale)

        def reason():
            _, evs = raw(bed.api, "GET", f"/api/v1/namespaces/{ns}/events",
                         query={"fieldSelector": "involvedObject.name=pinned-while-stale"})
            return [e["message"] for e in evs["items"] if e["reason"] == "FailedScheduling" and "stale" in e["message"]]
        try:
            msgs = wait_for(reason, 60, "FailedScheduling naming the stale report")
        except TimeoutError:
            msgs = []
        pinned_bound_while_stale = bool(next(p for p in bed.pods(ns)
                                             if p["metadata"]["name"] == "pinned-while-stale")["spec"].get("nodeName"))

        # a fresh report: the node is chosen again
        t_fresh = time.monotonic()
        bed.set_reported_at(stale, now_utc(), models={MODEL: (16 << 30, "disk")})
        wait_for(lambda: g.debug_node(stale).get("stale") is False, 60, "the extender sees the fresh report")
        bed.create_pods(ns, [gpu_pod("pinned-after-fresh", memory=SHARE, scheduler=sched, node_selector=pin)]
                        + [gpu_pod(f"after-fresh-{i}", memory=SHARE, scheduler=sched, annotations=ann)
                           for i in range(4)])
        after_pin = wait_for(lambda: placed("pinned-after-fresh", 1), 120, "the pinned pod bound after the fresh report")
        after = wait_for(lambda: placed("after-fresh-", 4), 120, "pods placed after the fresh report")
        fresh_s = time.monotonic() - t_fresh
        chosen_after = sum(1 for v in after.values() if v == stale)
        passed = (not on_stale and not pinned_bound_while_stale and bool(msgs)
                  and after_pin["pinned-after-fresh"] == stale and chosen_after > 0)
        found = (f"while stale: {len(on_stale)} of {pods} pods on {stale} (it caches their model), the pinned pod "
                 f"{'BOUND' if pinned_bound_while_stale else 'Pending'}"
                 f"{' with: ' + msgs[0][:160] if msgs else ' without a stale reason'}; after a fresh report: "
                 f"pinned pod on {after_pin['pinned-after-fresh']}, {chosen_after}/4 new model pods on {stale}, "
                 f"{fresh_s:.1f}s after the report")
        figures = {"pods_while_stale": pods, "placed_on_stale_node": len(on_stale),
                   "pinned_bound_while_stale": int(pinned_bound_while_stale), "stale_reason_events": len(msgs),
                   "chosen_after_fresh": chosen_after, "fresh_to_bound_s": round(fresh_s, 1)}
        return CaseResult("node agent sends a stale report",
                          f"{stale}'s report dated 1 h ago (staleAfterSeconds {stale_after_s:g}), the node caching "
                          f"the model of {pods} share pods: none placed there, a pod pinned there Pending with a "
                          "'stale' reason; after a fresh report the node is chosen again",
                          found, passed, figures)
    finally:
        g.stop()
        bed.delete_namespace(ns)
        bed.set_reported_at(stale, now_utc(), models={})


# ---------------------------------------------------------------- autoscaler helpers

def deployment_body(name: str, replicas: int, delay: str = "500ms") -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels,
                                           "annotations": {contract.READY_DELAY: delay, contract.MODEL: MODEL}},
                              "spec": {"terminationGracePeriodSeconds": 0,
                                       "containers": [{"name": "server", "image": IMAGE, "resources": {
                                           "limits": {contract.GPU_RESOURCE: "1"}}}]}}},
    }


def ias_body(name: str, target: str, **spec: Any) -> dict:
    s = {"scaleTargetRef": {"name": target}, "minReplicas": 1, "maxReplicas": 8,
         "signals": [{"type": "queueDepth", "target": 5}]}
    s.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceAutoscaler", "metadata": {"name": name}, "spec": s}


def get_ias(bed: ChaosBed, ns: str, name: str) -> dict:
    return raw(bed.api, "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}")[1] or {}


def ias_condition(bed: ChaosBed, ns: str, name: str, type_: str) -> dict | None:
    for c in (get_ias(bed, ns, name).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return None


def replicas_of(bed: ChaosBed, ns: str, name: str = "llm") -> int:
    return raw(bed.api, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")[1]["spec"]["replicas"]


class Fleet:
    """The fleet simulator for a namespace's app=llm pods, with a load set at run time."""

    def __init__(self, bed: ChaosBed, ns: str, rate: float):
        from benchmarks.fleet.driver import Load
        from benchmarks.fleet.exporter import FleetSimulator, Workload
        from benchmarks.fleet.model import ServiceModel
        w = Workload(ns, "app=llm", MODEL, None, ServiceModel(max_batch=4))
        self.sim = FleetSimulator(bed.cluster.api_client(), [w], prometheus=bed.prometheus()).start()
        self.load = Load(self.sim, w, rate)

    def stop(self) -> None:
        self.load.stop()
        self.sim.stop()


class InProcessAutoscaler:
    def __init__(self, bed: ChaosBed, ns: str, on_decision=None, lease_s: float = 3.0):
        from autoscaler.daemon import Autoscaler, Config
        cfg = Config(prometheus_url=bed.prometheus().url, interval_s=1.0, namespace=ns, watch_namespace=ns,
                     identity=f"chaos-{ns}"[:60], metrics_port=0, lease_duration_s=lease_s,
                     prometheus_timeout_s=1.0, demote_wait_s=3.0)
        self.daemon = Autoscaler(bed.cluster.api_client(), cfg, on_decision=on_decision)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.daemon.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def actions(self, action: str = "scale") -> float:
        return self.daemon.metrics.actions.labels(action)._value.get()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(15)


def _wait_scraped(bed: ChaosBed, ns: str, timeout: float = 60) -> None:
    wait_for(lambda: bed.prometheus().query(f'vllm:num_requests_running{{namespace="{ns}"}}'), timeout,
             f"fleet metrics of {ns} in Prometheus")


# ---------------------------------------------------------------- 3. Prometheus outage

@_timed
def prometheus_outage(bed: ChaosBed, outage_s: float = 120.0, rate: float = 10.0) -> CaseResult:
    """Requests running per replica (PromQL) is the signal, with a 2 s scale-down window: if a
    missing answer were read as 0, the autoscaler would scale down within seconds."""
    bed.install_crd()
    prom = bed.prometheus()
    ns = bed.namespace("prom")
    decisions: list[tuple[float, int, str]] = []
    fleet = auto = None
    try:
        raw(bed.api, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deployment_body("llm", 3))
        query = f'avg(vllm:num_requests_running{{namespace="{ns}",pod!=""}})'
        raw(bed.api, "POST", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}", ias_body(
            "llm", "llm", signals=[{"type": "promql", "target": 2.5, "query": query}],
            behavior={"scaleDown": {"stabilizationWindowSeconds": 2}}))
        fleet = Fleet(bed, ns, rate)
        _wait_scraped(bed, ns)
        auto = InProcessAutoscaler(bed, ns, on_decision=lambda key, now, obs, d: decisions.append(
            (time.time(), d.replicas, d.rule)))

        def steady():
            st = get_ias(bed, ns, "llm").get("status") or {}
            known = {c["type"]: c["status"] for c in st.get("conditions") or []}.get("SignalsKnown") == "True"
            return known and st.get("desiredReplicas") == replicas_of(bed, ns) >= 2 and st["desiredReplicas"]
        wait_for(steady, 90, "a steady decision on known signals")
        time.sleep(3)  # a few more ticks on known signals
        held = replicas_of(bed, ns)
        actions_before = auto.actions()
        prom.stop()
        t_stop = time.time()
        seen: list[int] = []
        while time.time() < t_stop + outage_s:
            seen.append(replicas_of(bed, ns))
            time.sleep(0.5)
        cond = ias_condition(bed, ns, "llm", "SignalsKnown") or {}
        actions_during = auto.actions() - actions_before
        during = [d for d in decisions if t_stop + 1.5 <= d[0] <= t_stop + outage_s]
        holds = sum(1 for d in during if d[2] == "unknownHold")
        downs = sum(1 for d in during if d[1] < held)
        prom.start()
        t_back = time.time()
        try:
            wait_for(lambda: (ias_condition(bed, ns, "llm", "SignalsKnown") or {}).get("status") == "True"
                     and any(t > t_back and rule != "unknownHold" for t, _, rule in decisions), 90,
                     "signals known again")
            recovery = time.time() - t_back
        except TimeoutError:
            recovery = None
        passed = (min(seen) == held == max(seen) and downs == 0 and actions_during == 0 and recovery is not None
                  and cond.get("status") == "False")
        found = (f"replicas {held} throughout ({min(seen)}..{max(seen)} over {len(seen)} samples); {len(during)} "
                 f"decisions while down, {holds} unknownHold, {downs} below {held}; {actions_during:.0f} scale actions; "
                 f"SignalsKnown={cond.get('status')} ({cond.get('reason')}); signals known again "
                 + (f"{recovery:.1f}s after Prometheus restarted" if recovery is not None else "NEVER"))
        figures = {"outage_s": outage_s, "replicas_held": held, "min_replicas_during": min(seen),
                   "decisions_during": len(during), "unknown_hold_decisions": holds, "scale_downs_during": downs,
                   "scale_actions_during": int(actions_during),
                   "recovery_s": round(recovery, 1) if recovery is not None else None}
        return CaseResult("Prometheus stopped under load",
                          f"Prometheus stopped {outage_s:g}s at {rate:g} req/s on {held} replicas (signal: PromQL "
                          "requests running per replica, scale-down window 2 s): replicas never lower, no scale "
                          "action, SignalsKnown False while down, signals known and decisions on them after",
                          found, passed, figures)
    finally:
        if prom.port and not any(p.name == "prometheus" for p in bed.cluster.running()):
            prom.start()
        if auto:
            auto.stop()
        if fleet:
            fleet.stop()
        bed.delete_namespace(ns)


# ---------------------------------------------------------------- 4. autoscaler leader killed

def metric_total(port: int, name: str) -> float | None:
    """Sum of every sample of `name` on a local /metrics page; None when it cannot be read."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _lease(bed: ChaosBed, ns: str) -> dict:
    status, lease = raw(bed.api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/gpusched-autoscaler")
    return (lease or {}).get("spec") or {} if status == 200 else {}


@_timed
def autoscaler_leader_killed(bed: ChaosBed, lease_s: float = 15.0) -> CaseResult:
    """Two autoscaler processes; the leader scales a burst up, then is SIGKILLed (no chance to
    release the Lease). The standby must hold the Lease within the lease duration of the
    last renewal, never act at the same time as the leader, and act on the next burst."""
    from benchmarks.testbed.cluster import free_port, terminate_all
    bed.install_crd()
    prom = bed.prometheus()
    ns = bed.namespace("leader")
    procs: dict[str, subprocess.Popen] = {}
    ports: dict[str, int] = {}
    fleet = None
    retry = lease_s * 2 / 15
    stop_watch = threading.Event()
    overlap = [0, 0]  # samples with both leaders, samples taken
    renew_last: list[str | None] = [None]  # the leader's last renewTime seen before the takeover
    replica_changes: list[tuple[float, int, int]] = []
    try:
        raw(bed.api, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deployment_body("llm", 1))
        # maxReplicas with headroom: the old leader's burst must not reach it, so the new one has a scale-up to make
        raw(bed.api, "POST", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}", ias_body("llm", "llm",
                                                                                          maxReplicas=24))
        fleet = Fleet(bed, ns, 1.0)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for ident in ("as-a", "as-b"):
            ports[ident] = free_port()
            out = open(bed.cluster.dir / "logs" / f"{ns}-{ident}.log", "wb")
            procs[ident] = subprocess.Popen(
                # -v: DEBUG, every decision with its reason, for a failure to be read afterwards
                [sys.executable, "-m", "scheduler.cli", "-v", "autoscaler",
                 "--kubeconfig", str(bed.cluster.kubeconfig), "--prometheus-url", prom.url, "--interval", "1",
                 "--namespace", ns, "--watch-namespace", ns,
                 "--identity", ident, "--lease-duration", f"{lease_s:g}", "--metrics-port", str(ports[ident]),
                 "--metrics-addr", "127.0.0.1", "--prometheus-timeout", "1"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

        def watch():
            last = None
            while not stop_watch.is_set():
                flags = [metric_total(ports[i], "gpusched_autoscaler_leader") for i in procs if procs[i].poll() is None]
                spec = _lease(bed, ns)
                if spec.get("holderIdentity") == leader:
                    renew_last[0] = spec.get("renewTime")
                overlap[1] += 1
                if sum(1 for f in flags if f == 1) > 1:
                    overlap[0] += 1
                try:
                    r = replicas_of(bed, ns)
                    if last is not None and r != last:
                        replica_changes.append((time.time(), last, r))
                    last = r
                except Exception:  # noqa: BLE001
                    pass
                stop_watch.wait(0.1)
        watcher = threading.Thread(target=watch, daemon=True)
        leader = wait_for(lambda: _lease(bed, ns).get("holderIdentity"), 60, "a Lease holder")
        follower = "as-b" if leader == "as-a" else "as-a"
        watcher.start()
        _wait_scraped(bed, ns)
        wait_for(lambda: metric_total(ports[leader], "gpusched_autoscaler_decisions_total"), 120, "the leader deciding")
        fleet.load.set_rate(12.0)  # the queue grows on one replica: the leader scales up
        wait_for(lambda: replicas_of(bed, ns) >= 2, 180, "scaled up by the leader")
        time.sleep(3)
        leader_scales = _scale_actions(ports[leader])
        follower_decisions_before = metric_total(ports[follower], "gpusched_autoscaler_decisions_total") or 0
        procs[leader].send_signal(signal.SIGKILL)
        t_kill = time.time()
        procs[leader].wait(10)
        wait_for(lambda: _lease(bed, ns).get("holderIdentity") == follower, lease_s * 3 + 10,
                 "the standby holds the Lease", interval=0.05)
        t_takeover = time.time()
        takeover = t_takeover - t_kill
        before = replicas_of(bed, ns)
        fleet.load.set_rate(60.0)
        try:
            wait_for(lambda: replicas_of(bed, ns) > before, 120, "a scale-up by the new leader", interval=0.2)
            acted = True
        except TimeoutError:
            acted = False
        # what the new leader last decided, and whether it was deciding at all: the log says why
        last = (get_ias(bed, ns, "llm").get("status") or {}).get("lastDecision") or {}
        decided_after = (metric_total(ports[follower], "gpusched_autoscaler_decisions_total") or 0) \
            - follower_decisions_before
        time.sleep(3)
        stop_watch.set()
        watcher.join(5)
        new_scales = _scale_actions(ports[follower])
        _, evs = raw(bed.api, "GET", f"/api/v1/namespaces/{ns}/events")
        rescale = [e for e in evs["items"] if e["reason"] == "SuccessfulRescale"]
        by = {e.get("reportingInstance") for e in rescale}
        changes = len(replica_changes)
        duplicates = changes - (leader_scales + new_scales)
        # The algorithm's bound (as client-go's): the standby sees the last renewal up to one retry
        # period late, and sees it expire up to one retry period late; plus 1 s for API round trips
        # and process scheduling on a loaded 2-core machine
        bound = lease_s + 2 * retry + 1.0
        try:
            from datetime import datetime
            last_renew = datetime.strptime(renew_last[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=now_utc().tzinfo).timestamp()
            since_renew = t_takeover - last_renew
        except (TypeError, ValueError):
            since_renew = None
        passed = (takeover <= bound and overlap[0] == 0 and follower_decisions_before == 0 and acted
                  and by <= {leader, follower} and duplicates <= 0)
        found = (f"{follower} held the Lease {takeover:.1f}s after SIGKILL of {leader}"
                 + (f", {since_renew:.1f}s after its last renewal" if since_renew is not None else "")
                 + f" (lease {lease_s:g}s, retry "
                 f"{retry:.1f}s); both leaders at once in {overlap[0]} of {overlap[1]} samples; standby decided "
                 f"{follower_decisions_before:.0f} times before; scale actions {leader_scales:.0f} by the old leader + "
                 f"{new_scales:.0f} by the new one for {changes} Deployment replica changes; new leader "
                 f"{'scaled up' if acted else 'did NOT scale up'} the next burst")
        if not acted:
            _, pods = raw(bed.api, "GET", f"/api/v1/namespaces/{ns}/pods")
            ready = sum(pod_view(p).ready for p in (pods or {}).get("items") or [])
            found += (f" ({decided_after:.0f} decisions as leader; the last: {last.get('replicas')} replicas by "
                      f"{last.get('rule')}: {last.get('reason')}; the API server shows {ready} Ready pods; "
                      f"log {bed.cluster.dir / 'logs' / f'{ns}-{follower}.log'})")
        figures = {"lease_s": lease_s, "takeover_s": round(takeover, 1), "takeover_bound_s": round(bound, 1),
                   "since_last_renewal_s": round(since_renew, 1) if since_renew is not None else None,
                   "both_leaders_samples": overlap[0], "samples": overlap[1],
                   "standby_decisions_before": int(follower_decisions_before),
                   "scale_actions_old_leader": int(leader_scales), "scale_actions_new_leader": int(new_scales),
                   "replica_changes_seen": changes, "duplicate_scale_actions": int(max(duplicates, 0))}
        return CaseResult("autoscaler leader killed",
                          f"two autoscalers, Lease {lease_s:g}s; SIGKILL the leader after it scaled a burst: standby "
                          f"holds the Lease within lease + 2 retry periods + 1 s ({bound:.1f}s), never two leaders at once, every "
                          "Deployment replica change is one scale action of one leader, the new leader scales the "
                          "next burst", found, passed, figures)
    finally:
        stop_watch.set()
        terminate_all(procs.values())
        if fleet:
            fleet.stop()
        bed.delete_namespace(ns)


def _scale_actions(port: int) -> float:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return 0.0
    for line in text.splitlines():
        if line.startswith('gpusched_autoscaler_actions_total{action="scale"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---------------------------------------------------------------- 5. kube-apiserver restarted

@_timed
def apiserver_restart(bed: ChaosBed, down_s: float = 5.0) -> CaseResult:
    """Restart kube-apiserver (same port, same etcd). Without anyone touching them, the
    extender must see node and pod changes made afterwards and bind with GPU ids, and the
    autoscaler must see a spec change made afterwards and act on it."""
    bed.install_crd()
    ns = bed.namespace("apiserver")
    g = bed.gpusched
    fleet = auto = None
    node = sorted(n["metadata"]["name"] for n in bed.list_nodes())[0]
    try:
        raw(bed.api, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", deployment_body("llm", 1))
        raw(bed.api, "POST", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}", ias_body("llm", "llm", maxReplicas=4))
        fleet = Fleet(bed, ns, 0.5)
        _wait_scraped(bed, ns)
        auto = InProcessAutoscaler(bed, ns)
        wait_for(lambda: (get_ias(bed, ns, "llm").get("status") or {}).get("desiredReplicas") == 1, 60,
                 "the autoscaler deciding before the restart")
        bed.create_pods(ns, [gpu_pod("before", memory=SHARE, node_selector={"kubernetes.io/hostname": node})])
        wait_for(lambda: any(p["metadata"]["name"] == "before" and p["spec"].get("nodeName") for p in bed.pods(ns)),
                 60, "a pod bound before the restart")
        wait_for(lambda: f"{ns}/before" in g.debug_node(node).get("pods", {}), 30, "the extender counting it")
        errors_before = auto.daemon.ias_informer.errors

        down = bed.cluster.restart_apiserver(down_s=down_s)
        t_up = time.monotonic()
        # the extender: a node change, a pod deletion and a new pod, all after the restart
        model = f"org/after-restart-{int(time.time())}"
        bed.set_reported_at(node, now_utc(), models={model: (8 << 30, "disk")})
        raw(bed.api, "DELETE", f"/api/v1/namespaces/{ns}/pods/before")
        checks: dict[str, float | None] = {}

        def seen(what: str, fn: Callable[[], Any], timeout: float = 90) -> None:
            try:
                wait_for(fn, timeout, what, interval=0.2)
                checks[what] = round(time.monotonic() - t_up, 1)
            except TimeoutError:
                checks[what] = None
        seen("extender sees a node change", lambda: model in g.debug_node(node).get("models", {}))
        seen("extender sees a pod deleted", lambda: f"{ns}/before" not in g.debug_node(node).get("pods", {}))
        bed.create_pods(ns, [gpu_pod("after", memory=SHARE)])
        seen("extender binds with GPU ids", lambda: any(
            p["metadata"]["name"] == "after" and contract.GPU_IDS in (p["metadata"].get("annotations") or {})
            for p in bed.pods(ns)))
        seen("extender counts the new pod", lambda: any(
            f"{ns}/after" in g.debug_node(n).get("pods", {}) for n in
            [p["spec"].get("nodeName") for p in bed.pods(ns) if p["metadata"]["name"] == "after"] if n))
        # the autoscaler: a spec change after the restart is acted on
        raw(bed.api, "PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/llm", {"spec": {"minReplicas": 3}},
            content_type="application/merge-patch+json")
        seen("autoscaler acts on a spec change", lambda: replicas_of(bed, ns) >= 3)
        seen("autoscaler writes status", lambda: (get_ias(bed, ns, "llm").get("status") or {}).get("desiredReplicas") == 3)
        seen("autoscaler holds its Lease", lambda: _lease(bed, ns).get("holderIdentity") == auto.daemon.cfg.identity
             and auto.daemon.is_leader())
        errors = auto.daemon.ias_informer.errors - errors_before
        ok = [k for k, v in checks.items() if v is not None]
        passed = len(ok) == len(checks)
        found = (f"API server unreachable {down:.1f}s; " + "; ".join(
            f"{k}: {'after ' + format(v, '.1f') + 's' if v is not None else 'NEVER'}" for k, v in checks.items())
            + f"; the autoscaler's informer saw {errors} watch errors and healed by itself")
        figures = {"apiserver_down_s": round(down, 1), "checks_passed": len(ok), "checks": len(checks),
                   "slowest_recovery_s": max((v for v in checks.values() if v is not None), default=None),
                   "autoscaler_watch_errors": errors, "manual_actions": 0}
        return CaseResult("kube-apiserver restarted",
                          f"kube-apiserver stopped and started on the same port and etcd ({down_s:g}s down): with "
                          "no manual action the extender sees a node change, a pod deletion, binds a new pod with GPU "
                          "ids; the autoscaler acts on a spec change, writes status, keeps its Lease",
                          found, passed, figures)
    finally:
        if auto:
            auto.stop()
        if fleet:
            fleet.stop()
        bed.delete_namespace(ns)
        bed.set_reported_at(node, now_utc(), models={})


def _pair_kill(bed: ChaosBed, **kw: Any) -> CaseResult:
    """Two leader-elected kube-scheduler + extender pairs; the active one SIGKILLed during a burst."""
    from benchmarks.chaos.ha import active_pair_killed_during_burst
    return active_pair_killed_during_burst(bed, **kw)


CASES = {
    "extender-kill": extender_killed_during_burst,
    "extender-kill-not-ignorable": lambda bed, **kw: extender_killed_during_burst(bed, ignorable=False, **kw),
    "extender-kill-direct": lambda bed, **kw: extender_killed_during_burst(bed, ignorable=False, direct=True, **kw),
    "stale-report": stale_node_report,
    "prometheus-outage": prometheus_outage,
    "leader-kill": autoscaler_leader_killed,
    "apiserver-restart": apiserver_restart,
    "scheduler-pair-kill": _pair_kill,
}
