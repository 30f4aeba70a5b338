"""The daemon's reconcile step with the Kubernetes adapter and Prometheus swapped for
fakes: what it writes, what it keeps when a write fails, dry run, bad input."""
from __future__ import annotations

import pytest

from autoscaler import daemon as dmod
from autoscaler import kube, signals
from autoscaler.daemon import Autoscaler, Config
from autoscaler.policy import initial_state
from scheduler import contract

NOW = 1_800_000_000.0


def pod(name, state, created="2027-01-15T08:00:00Z"):
    conds = {"warm": [("ContainersReady", "True"), ("Ready", "False")],
             "ready": [("ContainersReady", "True"), ("Ready", "True"), (contract.SERVING_GATE, "True")],
             "loading": [("ContainersReady", "False"), ("Ready", "False")]}[state]
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created,
                         "labels": {"app": "llm", "pod-template-hash": "h"}},
            "spec": {"readinessGates": [{"conditionType": contract.SERVING_GATE}]},
            "status": {"phase": "Running", "conditions": [{"type": t, "status": s,
                                                           "lastTransitionTime": created} for t, s in conds]}}


IAS = {"metadata": {"name": "llm", "namespace": "ns", "uid": "u1", "generation": 1},
       "spec": {"scaleTargetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 6, "warmReplicas": 1,
                "signals": [{"type": "queueDepth", "target": 5}]}}
DEP = {"metadata": {"name": "llm", "namespace": "ns", "uid": "d1", "resourceVersion": "9"},
       "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "llm"}}, "template": {}}}


class World:
    def __init__(self, monkeypatch, pods, queue=18.0, deployment=DEP):
        self.calls: list[tuple] = []
        self.events: list[tuple] = []
        self.fail_scale = False
        self.queue = queue
        w = self

        def read_signals(client, spec, now, *, scope, ready, timeout):
            v = None if w.queue is None else w.queue / max(ready, 1)
            return {s.name: signals.Reading(v, "fake" if v is not None else "Prometheus timed out after 1s")
                    for s in spec.signals}

        def scale(api, ns, name, replicas, *, deployment=None, **kw):
            w.calls.append(("scale", name, replicas))
            if w.fail_scale:
                raise kube.KubeError("Conflict", "still conflicting")
            return deployment["spec"]["replicas"]

        monkeypatch.setattr(signals, "read_signals", read_signals)
        monkeypatch.setattr(kube, "get_deployment", lambda api, ns, name: deployment if name == "llm" else None)
        monkeypatch.setattr(kube, "set_serving", lambda api, ns, p, v, r, m: w.calls.append(("serving", p, v)))
        monkeypatch.setattr(kube, "scale", scale)
        monkeypatch.setattr(kube, "patch_status", lambda api, ns, name, st: w.calls.append(("status", st)))
        monkeypatch.setattr(Autoscaler, "pods_for", lambda self, ns, sel: pods)

        class Events:
            def record(self, obj, type_, reason, message):
                w.events.append((type_, reason, message))
                return True

        self.Events = Events

    def daemon(self, **kw):
        d = Autoscaler(api=None, cfg=Config(prometheus_url="http://prom", identity="me", metrics_port=0, **kw),
                       prometheus=object())
        d.events = self.Events()
        return d

    def writes(self, kind):
        return [c for c in self.calls if c[0] == kind]


def test_burst_promotes_then_scales(monkeypatch):
    w = World(monkeypatch, [pod("a", "ready"), pod("b", "warm")])
    d = w.daemon()
    dec = d.reconcile(IAS, NOW)
    # 18 waiting over 1 ready, target 5: ceil(18/5) = 4 serving, 1 warm -> 5 pods
    assert dec.replicas == 4
    assert w.writes("serving") == [("serving", "b", True)]
    assert w.writes("scale") == [("scale", "llm", 5)]
    assert w.calls.index(("serving", "b", True)) < w.calls.index(("scale", "llm", 5))  # promote first
    (_, st), = w.writes("status")
    assert st["desiredReplicas"] == 4 and st["currentReplicas"] == 1 and st["warmReplicas"] == 1
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds["AbleToScale"] == ("True", "SucceededRescale") and conds["SignalsKnown"][0] == "True"
    assert any(r == "SuccessfulRescale" for _, r, _ in w.events)
    key = "ns/llm"
    assert d.states[key].state is dec.state and d.states[key].last_target == 4


def test_failed_actuation_keeps_the_old_state(monkeypatch):
    w = World(monkeypatch, [pod("a", "ready"), pod("b", "warm")])
    w.fail_scale = True
    d = w.daemon()
    d.reconcile(IAS, NOW)
    st = d.states["ns/llm"]
    assert st.state == initial_state() and st.last_target is None  # the change did not happen
    (_, status), = w.writes("status")
    conds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conds["AbleToScale"] == ("False", "Conflict") and conds["Ready"] == ("False", "Conflict")
    assert ("Warning", "Conflict", "still conflicting") in w.events
    assert d.metrics.errors.labels("actuation")._value.get() == 1


def test_dry_run_writes_nothing_but_events(monkeypatch):
    w = World(monkeypatch, [pod("a", "ready"), pod("b", "warm")])
    d = w.daemon(dry_run=True)
    d.reconcile(IAS, NOW)
    assert w.calls == []
    (msg,) = [m for _, r, m in w.events if r == "DryRun"]
    assert "would set serving 1 -> 4" in msg and "promote b" in msg
    assert d.elector.name == "gpusched-autoscaler-dry-run"


def test_unknown_signals_hold_and_say_why(monkeypatch):
    w = World(monkeypatch, [pod("a", "ready"), pod("b", "ready"), pod("c", "warm")], queue=None,
              deployment=dict(DEP, spec=dict(DEP["spec"], replicas=3)))
    d = w.daemon()
    dec = d.reconcile(IAS, NOW)
    assert dec.replicas == 2 and dec.rule == "unknownHold"
    assert w.writes("serving") == [] and w.writes("scale") == []
    (_, st), = w.writes("status")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["SignalsKnown"]["reason"] == "PrometheusTimeout"
    assert ("Warning", "PrometheusTimeout") in [(t, r) for t, r, _ in w.events]


def test_a_hold_says_why_in_the_log_once_and_when_it_ends(monkeypatch, caplog):
    w = World(monkeypatch, [pod("a", "ready"), pod("b", "ready")], queue=None,
              deployment=dict(DEP, spec=dict(DEP["spec"], replicas=3)))  # 2 serving + the warm one asked for
    d = w.daemon()
    with caplog.at_level("INFO", logger="autoscaler.daemon"):
        for _ in range(3):
            d.reconcile(IAS, NOW)
        w.queue = 10.0  # Prometheus answers again: 10/2 = 5 per replica, the target: hold on the signal
        d.reconcile(IAS, NOW + 5)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    # three ticks of the same unknown hold: one warning, one decision line (a rule change), not three
    assert [lv for lv, m in lines if "PrometheusTimeout" in m] == ["WARNING"], lines
    assert sum("[unknownHold]" in m for _, m in lines) == 1, lines
    assert ("INFO", "ns/llm: every signal known again") in lines
    assert any("[signal:queueDepth]" in m or "[hold]" in m for _, m in lines[-3:]), lines


@pytest.mark.parametrize("ias,reason", [
    ({**IAS, "spec": {**IAS["spec"], "maxReplicas": 0}}, "InvalidSpec"),
    ({**IAS, "spec": {**IAS["spec"], "scaleTargetRef": {"name": "llm", "kind": "StatefulSet"}}}, "UnsupportedTarget"),
    ({**IAS, "spec": {**IAS["spec"], "scaleTargetRef": {"name": "nope"}}}, "TargetNotFound"),
])
def test_bad_input_is_reported_and_nothing_acted_on(monkeypatch, ias, reason):
    w = World(monkeypatch, [pod("a", "ready")])
    d = w.daemon()
    assert d.reconcile(ias, NOW) is None
    assert w.writes("serving") == [] and w.writes("scale") == []
    (_, st), = w.writes("status")
    assert set(st) == {"observedGeneration", "conditions"}  # nothing but the conditions
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Ready"] == reason
    assert [r for t, r, _ in w.events if t == "Warning"] == [reason]


def test_a_bug_in_one_object_does_not_stop_the_tick(monkeypatch):
    w = World(monkeypatch, [pod("a", "ready")])
    d = w.daemon()

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(dmod.warmpool, "plan", boom)
    assert d.reconcile_safe(IAS, NOW) is None
    assert ("Warning", "InternalError", "RuntimeError: boom") in w.events
    assert d.metrics.errors.labels("internal")._value.get() == 1


def test_prewarm_asked_when_the_decision_says_so(monkeypatch):
    w = World(monkeypatch, [pod("a", "ready"), pod("b", "warm")])
    d = w.daemon()
    asked = []
    monkeypatch.setattr(d.prewarmer, "prewarm", lambda dep, model, n, horizon, now: asked.append((model, n, horizon)))
    real = dmod.decide

    def with_prewarm(*a, **k):
        from dataclasses import replace
        return replace(real(*a, **k), prewarm=2)

    monkeypatch.setattr(dmod, "decide", with_prewarm)
    d.reconcile({**IAS, "spec": {**IAS["spec"], "model": "org/m", "coldStartSeconds": 30}}, NOW)
    assert asked == [("org/m", 2, 30.0)]


@pytest.mark.parametrize("text,want", [
    (None, [None]),                       # every namespace (cluster-wide RBAC needed)
    ("llm", ["llm"]),
    ("llm, team-b,llm", ["llm", "team-b"]),  # the chart joins autoscaler.namespaces with commas
    ("", []),                             # none listed: watch nothing
])
def test_watched_namespaces(text, want):
    from autoscaler.daemon import watched_namespaces
    assert watched_namespaces(text) == want


def test_watched_namespaces_refuses_non_names():
    from autoscaler.daemon import watched_namespaces
    with pytest.raises(ValueError):
        watched_namespaces("llm,../kube-system")


def test_ops_port_answers_with_the_daemons_health(monkeypatch):
    import urllib.error
    import urllib.request
    d = World(monkeypatch, []).daemon()
    port = d.serve(0, "127.0.0.1")
    try:
        for path in ("/healthz", "/readyz"):  # the chart probes /readyz; before any tick both are 503
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert exc.value.code == 503 and exc.value.read() == b"no tick yet\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.status == 200 and b"gpusched_autoscaler_decisions_total" in r.read()
    finally:
        d._server.shutdown()
        d._server.server_close()


@pytest.mark.parametrize("minute, window, want_windows, want_recent", [
    (4.0, 30.0, [60.0, 30.0], 9.0),  # the 1 m rate known: the recent one asked over --recent-window
    (None, 30.0, [60.0], None),  # a Prometheus that failed the 1 m rate is not asked again this tick
    (4.0, 0.0, [60.0], None),  # --recent-window 0: off
    (4.0, float("inf"), [60.0], None),  # a Config built in code with no usable window: off, not a crash
])
def test_the_recent_rate_is_read_beside_a_known_minute_rate(monkeypatch, minute, window, want_windows, want_recent):
    w = World(monkeypatch, [pod("a", "ready")])
    asked = []

    def read_arrival_rate(client, server, scope, now, *, timeout, window_s=60.0):
        asked.append(window_s)
        return signals.Reading(minute if window_s == 60.0 else 9.0, "fake")

    monkeypatch.setattr(signals, "read_arrival_rate", read_arrival_rate)
    seen = []
    d = w.daemon(recent_window_s=window)
    d.on_decision = lambda key, now, obs, dec: seen.append(obs)
    ias = {**IAS, "spec": {**IAS["spec"], "slo": {"queueWaitSeconds": 2}, "serviceRatePerReplica": 1.5,
                           "coldStartSeconds": 30}}
    d.reconcile(ias, NOW)
    assert asked == want_windows
    assert (seen[0].arrival_rate, seen[0].arrival_rate_recent) == (minute, want_recent)
    # the policy is told the window it was read over, for its noise margin
    assert seen[0].arrival_rate_recent_window_s == (window if want_recent is not None else None)
