"""The simulator decides as the live daemon does: a sim run's ticks (the pods it had,
what Prometheus answered, the Deployment's replicas) replayed through
autoscaler.daemon.Autoscaler.reconcile, with its Kubernetes and Prometheus adapters
replaced by in-memory fakes at the adapter boundary, give the same observation, the
same desired serving and warm replicas, and the same promotions, demotions and
Deployment scale, tick by tick."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from autoscaler import kube, signals, warmpool
from autoscaler.daemon import Autoscaler, Config
from autoscaler.policy import QUEUED_HOLD
from benchmarks.autoscale import policies as pol
from benchmarks.autoscale.service import calibrate_service_rate, service_model
from benchmarks.autoscale.sim import SimConfig, WorkloadInput, simulate
from benchmarks.fleet.model import TraceRow
from scheduler import contract


def _rows() -> list[TraceRow]:
    """2 req/s for 300 s, a 14 req/s burst for 240 s, then 1 req/s for 500 s."""
    rows, t = [], 0.0
    for rate, until in ((2.0, 300.0), (14.0, 540.0), (1.0, 1040.0)):
        while t < until:
            k = len(rows)
            rows.append(TraceRow(t, 400 + 37 * (k % 11), 60 + 13 * (k % 7)))
            t += 1.0 / rate
    return rows


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def pod_json(v: warmpool.PodView) -> dict:
    """The Kubernetes Pod the daemon would read for a simulated pod."""
    conds = [{"type": "ContainersReady", "status": "True" if v.loaded else "False",
              "lastTransitionTime": _iso(v.loaded_since if v.loaded else v.created)},
             {"type": "Ready", "status": "True" if v.ready else "False", "lastTransitionTime": _iso(v.created)}]
    if v.serving is not None:
        conds.append({"type": contract.SERVING_GATE, "status": "True" if v.serving else "False",
                      "lastTransitionTime": _iso(v.serving_since if v.serving else v.created)})
    meta = {"name": v.name, "namespace": "ns", "creationTimestamp": _iso(v.created),
            "labels": {"app": "llm", warmpool.TEMPLATE_HASH_LABEL: v.template_hash}}
    if v.deleting:
        meta["deletionTimestamp"] = _iso(v.created)
    return {"metadata": meta,
            "spec": {"readinessGates": [{"conditionType": contract.SERVING_GATE}] if v.gated else []},
            "status": {"phase": "Running", "conditions": conds}}


@pytest.fixture(scope="module")
def recorded():
    rows = _rows()
    svc = service_model("a100")
    mu = calibrate_service_rate(rows, svc, n=300)
    spec = pol.ours_spec("llm", max_replicas=12, mu=mu, cold_start_s=47.0, queue_wait_s=2.0, queue_target=5.0)
    res = simulate([WorkloadInput("llm", rows, svc, mu)], lambda i: pol.Ours("ours", spec, False, 1, record=True),
                   SimConfig(drain_after_s=60.0), record=True)
    return spec, res.workloads[0].decisions


def test_the_recorded_run_exercises_scaling(recorded):
    _, ticks = recorded
    reps = [t["replicas"] for t in ticks]
    assert len(ticks) > 150
    assert max(reps) >= 4 and reps[-1] < max(reps)  # scaled up for the burst, back down after
    assert any(t["promote"] for t in ticks) and any(t["demote"] for t in ticks)
    assert any(t["arrival"].value is not None for t in ticks)
    # the burst showed in the last two scrapes before the 1 m rate caught up with it
    assert any(t["recent"] is not None and t["recent"].value is not None
               and t["recent"].value > t["arrival"].value + 1 for t in ticks)
    # the burst queued: the fleet kept its size for the queued hold (600 s), then went down
    assert any(t["rule"] == QUEUED_HOLD for t in ticks)


def test_pod_json_round_trips(recorded):
    _, ticks = recorded
    for t in ticks[::7]:
        for v in t["views"]:
            assert warmpool.pod_view(pod_json(v)) == v


@pytest.fixture(scope="module")
def recorded_zero():
    """Scale to zero: 2 req/s for 120 s, idle until 900 s, 2 req/s for 100 s more."""
    rows = [TraceRow(t, 400, 60) for t in [k * 0.5 for k in range(240)] + [900 + k * 0.5 for k in range(200)]]
    svc = service_model("a100")
    spec = pol.ours_spec("llm", max_replicas=6, mu=2.0, cold_start_s=47.0, queue_wait_s=2.0, queue_target=5.0,
                         overrides={"minReplicas": 0, "scaleToZeroAfterSeconds": 120,
                                    "activation": {"labels": {"destination_service_name": "llm"}}})
    res = simulate([WorkloadInput("llm", rows, svc, 2.0)], lambda i: pol.Ours("ours", spec, False, 1, record=True),
                   SimConfig(drain_after_s=60.0), record=True)
    return spec, res.workloads[0].decisions


def test_the_zero_run_sleeps_and_wakes(recorded_zero):
    _, ticks = recorded_zero
    reps = [t["replicas"] for t in ticks]
    asleep = [t["now"] for t in ticks if t["replicas"] == 0]
    assert asleep and 200 < asleep[0] < 900 and reps[-1] >= 1  # to zero in the gap, back for the second burst
    # woken by the gateway's fallback at the first request's arrival (900 s), reconciled in that
    # second, out of the 5 s schedule: not at the next scrape (915 s)
    woken = [t for t in ticks if t["woken"]]
    assert [(t["now"], t["wake"], t["replicas"]) for t in woken] == [(901.0, 900.0, 1)]


def test_daemon_decides_as_the_simulator_tick_by_tick(monkeypatch, recorded):
    _replay(monkeypatch, *recorded)


def test_daemon_scales_to_zero_and_back_as_the_simulator(monkeypatch, recorded_zero):
    _replay(monkeypatch, *recorded_zero)


def _replay(monkeypatch, spec, ticks):
    cur: dict = {"now": 0.0}
    calls: list[tuple] = []
    monkeypatch.setattr(Autoscaler, "pods_for", lambda self, ns, sel: cur["pods"])
    monkeypatch.setattr(Autoscaler, "_wait_not_ready", lambda self, key, names: True)
    monkeypatch.setattr(kube, "get_deployment", lambda api, ns, name: cur["dep"])
    monkeypatch.setattr(signals, "read_signals", lambda client, sp, now, *, scope, ready, timeout: cur["readings"])
    # the 1 m rate, or the recent one over the daemon's default --recent-window (30 s: twice the sim's 15 s scrape)
    monkeypatch.setattr(signals, "read_arrival_rate", lambda client, server, scope, now, **kw:
                        cur["arrival"] if kw.get("window_s", 60.0) == 60.0 else
                        (cur["recent"] if kw["window_s"] == 30.0 else pytest.fail(f"window {kw['window_s']}")))
    monkeypatch.setattr(signals, "read_activation", lambda client, act, ns, now, **kw: cur["activation"])
    monkeypatch.setattr(kube, "set_serving", lambda api, ns, p, v, r, m: calls.append(("serving", p, v)))
    monkeypatch.setattr(kube, "scale", lambda api, ns, name, n, *, deployment=None, **kw: calls.append(("scale", n))
                        or deployment["spec"]["replicas"])
    monkeypatch.setattr(kube, "patch_status", lambda *a, **k: None)
    monkeypatch.setattr(Autoscaler, "is_leader", lambda self: True)
    seen: list = []
    d = Autoscaler(api=None, cfg=Config(prometheus_url="http://prom", identity="t", metrics_port=0, prewarm=False),
                   prometheus=object(), on_decision=lambda key, now, obs, dec: seen.append((obs, dec)),
                   clock=lambda: cur["now"])

    class Events:
        def record(self, *a):
            return True

    d.events = Events()
    ias = {"metadata": {"name": "llm", "namespace": "ns", "uid": "u", "generation": 1}, "spec": spec}
    # the object in the daemon's informer cache, where the activation endpoint looks it up
    d.ias.stores[0].on_event("ADDED", ias)
    for i in d.ias.informers:
        i.synced.set()
    woke = None
    for t in ticks:
        if t["wake"] != woke:  # the gateway's fallback called the endpoint (at the request's arrival)
            woke = t["wake"]
            cur["now"] = woke
            a = d.activator.handle("POST", "/activate/ns/llm", {}, woke)
            assert (a.code, a.woken) == (503, True), a
        cur.update(pods=[pod_json(v) for v in t["views"]], readings=t["readings"], arrival=t["arrival"],
                   recent=t["recent"],
                   activation=t["activation"],
                   dep={"metadata": {"name": "llm", "namespace": "ns", "uid": "d"},
                        "spec": {"replicas": t["dep_replicas"], "selector": {"matchLabels": {"app": "llm"}}}})
        calls.clear()
        cur["now"] = t["now"]
        n = len(seen)
        if t["woken"]:
            d.wake_pass()  # the daemon picks the woken object itself, at once
        else:
            d.reconcile(ias, t["now"])
        assert len(seen) == n + 1, t["now"]
        obs, dec = seen[-1]
        assert obs == t["obs"], t["now"]
        assert (dec.replicas, dec.warm) == (t["replicas"], t["warm"]), t["now"]
        assert [c[1] for c in calls if c[0] == "serving" and c[2]] == list(t["promote"]), t["now"]
        assert [c[1] for c in calls if c[0] == "serving" and not c[2]] == list(t["demote"]), t["now"]
        scaled = [c[1] for c in calls if c[0] == "scale"]
        assert scaled == ([t["plan_replicas"]] if t["plan_replicas"] != t["dep_replicas"] else []), t["now"]
