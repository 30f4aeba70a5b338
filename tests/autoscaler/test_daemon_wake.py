"""The daemon's wake pass (autoscaler.daemon.Autoscaler.wake_pass) with the Kubernetes
adapter and Prometheus swapped for fakes: which woken objects are reconciled out of
schedule, and what the next tick reads."""
from __future__ import annotations

import copy

from autoscaler import signals
from autoscaler.daemon import Autoscaler
from tests.autoscaler.test_daemon import DEP, NOW, World, pod

ZERO = {"metadata": {"name": "llm", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {"scaleTargetRef": {"name": "llm"}, "minReplicas": 0, "maxReplicas": 6, "warmReplicas": 0,
                 "signals": [{"type": "queueDepth", "target": 5}],
                 "activation": {"labels": {"destination_service_name": "llm"}}}}


def setup(monkeypatch, pods, replicas, leader=True):
    dep = copy.deepcopy(DEP)
    dep["spec"]["replicas"] = replicas
    w = World(monkeypatch, pods, queue=None if not pods else 0.0, deployment=dep)
    # the gateway's counter: no series (at zero Istio may not have one yet)
    monkeypatch.setattr(signals, "read_activation", lambda *a, **k: signals.Reading(None, "no series"))
    monkeypatch.setattr(Autoscaler, "is_leader", lambda self: leader)
    decided: list[tuple[float, object]] = []
    clock = {"now": NOW}
    d = w.daemon()
    d.clock = lambda: clock["now"]
    d.on_decision = lambda key, now, obs, dec: decided.append((now, obs, dec))
    d.ias.stores[0].on_event("ADDED", ZERO)
    for i in d.ias.informers:
        i.synced.set()
    return w, d, decided, clock


def test_a_wake_at_zero_is_reconciled_at_once_and_read_once(monkeypatch):
    w, d, decided, clock = setup(monkeypatch, [], 0)
    d.reconcile(ZERO, NOW)  # a tick: nothing asks for a replica, it stays at 0
    assert decided[-1][2].replicas == 0 and not w.writes("scale")
    clock["now"] = NOW + 2.0
    ans = d.activator.handle("POST", "/activate/ns/llm", {}, clock["now"])
    assert (ans.code, ans.woken) == (503, True)
    d.wake_pass()
    now, obs, dec = decided[-1]
    assert (now, obs.wake, dec.replicas, dec.rule) == (NOW + 2.0, NOW + 2.0, 1, "activation")
    assert w.writes("scale") == [("scale", "llm", 1)]
    d.wake_pass()  # nothing new: no second decision
    assert len(decided) == 2


def test_a_wake_of_a_serving_object_waits_for_its_tick(monkeypatch):
    w, d, decided, clock = setup(monkeypatch, [pod("a", "ready")], 1)
    d.reconcile(ZERO, NOW)
    n = len(decided)
    d.activator.handle("POST", "/activate/ns/llm", {}, NOW + 1.0)
    d.wake_pass()
    assert len(decided) == n  # serving already: no reconcile out of schedule
    d.reconcile(ZERO, NOW + 5.0)  # its tick reads the wake, which counts only at zero: no idle clock restart
    assert decided[-1][1].wake == NOW + 1.0 and decided[-1][2].state.last_active is None


def test_a_standby_takes_no_wake(monkeypatch):
    w, d, decided, clock = setup(monkeypatch, [], 0, leader=False)
    ans = d.activator.handle("POST", "/activate/ns/llm", {}, NOW)
    assert (ans.code, ans.woken, ans.retry_after) == (503, False, 1)
    d.wake_pass()
    assert not decided and not w.writes("scale")
