"""The reconcile's pure phases as tables: what a spec is refused with, the summary line,
the five conditions and the status body. test_daemon.py checks them wired together."""
from __future__ import annotations

import pytest

from autoscaler import kube, signals
from autoscaler.daemon import PROMETHEUS_NOW, Failure, conditions, parse_target, status_body, summarise
from autoscaler.policy import HOLD, MAX_REPLICAS, MIN_REPLICAS, RATE_LIMIT, Decision, ScaleState
from autoscaler.warmpool import Counts, Plan

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SPEC = {"scaleTargetRef": {"name": "llm"}, "maxReplicas": 6, "signals": [{"type": "queueDepth", "target": 5}]}
NOT_READY = ("Ready", "False")
NOT_ABLE = ("AbleToScale", "False")
NOT_ACTIVE = ("ScalingActive", "False")


def decision(replicas=4, rule="signal:queueDepth", reason="queueDepth 18/replica vs target 5"):
    return Decision(replicas=replicas, warm=1, promote=1, cold_start=2, demote=0, prewarm=0, rule=rule,
                    reason=reason, state=ScaleState(), current=1)


def plan(promote=("b",), demote=(), replicas=5, warm=1):
    return Plan(promote=promote, demote=demote, replicas=replicas, serving=4, warm=warm)


# ---------------------------------------------------------------- parse_target

@pytest.mark.parametrize("name,spec,reason,conds", [
    ("invalid", {**SPEC, "maxReplicas": 0}, "InvalidSpec", [NOT_READY, NOT_ACTIVE]),
    ("no-spec", None, "InvalidSpec", [NOT_READY, NOT_ACTIVE]),
    ("statefulset", {**SPEC, "scaleTargetRef": {"name": "llm", "kind": "StatefulSet"}}, "UnsupportedTarget",
     [NOT_READY, NOT_ABLE, NOT_ACTIVE]),
    ("old-api", {**SPEC, "scaleTargetRef": {"name": "llm", "apiVersion": "extensions/v1beta1"}},
     "UnsupportedTarget", [NOT_READY, NOT_ABLE, NOT_ACTIVE]),
])
def test_parse_target_refuses(name, spec, reason, conds):
    with pytest.raises(Failure) as e:
        parse_target({"spec": spec})
    assert (e.value.reason, e.value.kind, e.value.conditions) == (reason, "spec", conds)


def test_parse_target_accepts_a_deployment():
    assert parse_target({"spec": SPEC}).scale_target_ref.name == "llm"


# ---------------------------------------------------------------- summarise

@pytest.mark.parametrize("name,counts,d,pl,dep,want", [
    ("promote", Counts(ready=1, warm=1), decision(), plan(), 2,
     "serving 1 -> 4 (ready 1), warm pool 1 -> 1, Deployment replicas 2 -> 5; promote b"),
    ("demote", Counts(ready=4, warm=0), decision(2), plan((), ("c", "d"), 4, 2), 4,
     "serving 4 -> 2 (ready 4), warm pool 0 -> 2, Deployment replicas 4 -> 4; demote c, d"),
    ("pending-counts", Counts(ready=2, pending=1), decision(3), plan((), (), 3, 0), 3,
     "serving 3 -> 3 (ready 2), warm pool 0 -> 0, Deployment replicas 3 -> 3"),  # current = 2 ready + 1 pending
])
def test_summarise(name, counts, d, pl, dep, want):
    assert summarise(counts, d, pl, dep) == want


# ---------------------------------------------------------------- conditions

SIG_OK = ("True", "AllSignalsKnown", "read queueDepth")
SIG_BAD = ("False", "PrometheusTimeout", "queueDepth: Prometheus timed out after 1s: holding replicas")
CONFLICT = kube.KubeError("Conflict", "still conflicting")

@pytest.mark.parametrize("name,d,failure,scaled,holding,sig,want", [
    ("scaled", decision(), None, True, False, SIG_OK,
     [("True", "Reconciled"), ("True", "SucceededRescale"), ("True", "ValidMetricFound"),
      ("True", "AllSignalsKnown"), ("False", "DesiredWithinRange")]),
    ("nothing-to-scale", decision(), None, False, False, SIG_OK,
     [("True", "Reconciled"), ("True", "ReadyForNewScale"), ("True", "ValidMetricFound"),
      ("True", "AllSignalsKnown"), ("False", "DesiredWithinRange")]),
    ("failed", decision(), CONFLICT, False, False, SIG_OK,
     [("False", "Conflict"), ("False", "Conflict"), ("True", "ValidMetricFound"), ("True", "AllSignalsKnown"),
      ("False", "DesiredWithinRange")]),
    ("holding", decision(2, "unknownHold"), None, False, True, SIG_BAD,
     [("True", "Reconciled"), ("True", "ReadyForNewScale"), ("True", "HoldingOnUnknown"),
      ("False", "PrometheusTimeout"), ("False", "DesiredWithinRange")]),
    ("capped", decision(6, MAX_REPLICAS), None, True, False, SIG_OK,
     [("True", "Reconciled"), ("True", "SucceededRescale"), ("True", "ValidMetricFound"),
      ("True", "AllSignalsKnown"), ("True", "TooManyReplicas")]),
    ("raised", decision(1, MIN_REPLICAS), None, False, False, SIG_OK,
     [("True", "Reconciled"), ("True", "ReadyForNewScale"), ("True", "ValidMetricFound"),
      ("True", "AllSignalsKnown"), ("True", "TooFewReplicas")]),
    ("rate-limited", decision(3, RATE_LIMIT), None, True, False, SIG_OK,
     [("True", "Reconciled"), ("True", "SucceededRescale"), ("True", "ValidMetricFound"),
      ("True", "AllSignalsKnown"), ("True", "ScaleRateLimited")]),
    ("hold", decision(1, HOLD), None, False, False, SIG_OK,
     [("True", "Reconciled"), ("True", "ReadyForNewScale"), ("True", "ValidMetricFound"),
      ("True", "AllSignalsKnown"), ("False", "DesiredWithinRange")]),
])
def test_conditions(name, d, failure, scaled, holding, sig, want):
    conds = conditions(d, failure, scaled, "the summary", holding, sig, 7)
    assert [c["type"] for c in conds] == ["Ready", "AbleToScale", "ScalingActive", "SignalsKnown", "ScalingLimited"]
    assert [(c["status"], c["reason"]) for c in conds] == want
    assert all(c["observedGeneration"] == 7 for c in conds)


def test_condition_messages():
    ok = {c["type"]: c["message"] for c in conditions(decision(), None, True, "the summary", False, SIG_OK, 1)}
    assert ok["AbleToScale"] == "the summary" and ok["ScalingActive"] == decision().reason
    assert ok["ScalingLimited"] == "the desired count is within range"
    bad = {c["type"]: c["message"] for c in conditions(decision(), CONFLICT, False, "the summary", False, SIG_OK, 1)}
    assert bad["Ready"] == bad["AbleToScale"] == "still conflicting"
    capped = conditions(decision(6, MAX_REPLICAS, "26 (capped by maxReplicas 6)"), None, True, "s", False, SIG_OK, 1)
    assert capped[-1]["message"] == "26 (capped by maxReplicas 6)"  # why it is limited, with the arithmetic


# ---------------------------------------------------------------- status_body

@pytest.mark.parametrize("name,scaled,reason_len,want_keys", [
    ("scaled", True, 10, {"observedGeneration", "currentReplicas", "desiredReplicas", "warmReplicas", "lastDecision",
                          "lastScaleTime"}),
    ("not-scaled", False, 10, {"observedGeneration", "currentReplicas", "desiredReplicas", "warmReplicas",
                               "lastDecision"}),
    ("long-reason", False, 5000, {"observedGeneration", "currentReplicas", "desiredReplicas", "warmReplicas",
                                  "lastDecision"}),  # the reason is cut at 4000 characters
])
def test_status_body(name, scaled, reason_len, want_keys):
    body = status_body(3, Counts(ready=2, pending=1, warm=1), decision(reason="x" * reason_len), plan(), scaled, NOW)
    assert set(body) == want_keys
    assert (body["observedGeneration"], body["currentReplicas"], body["desiredReplicas"], body["warmReplicas"]) == \
        (3, 3, 4, 1)  # current = 2 ready + 1 pending
    assert body["lastDecision"] == {"time": "2027-01-15T08:00:00Z", "replicas": 4, "warm": 1,
                                    "rule": "signal:queueDepth", "reason": "x" * min(reason_len, 4000)}
    assert body.get("lastScaleTime", "2027-01-15T08:00:00Z") == "2027-01-15T08:00:00Z"


# ---------------------------------------------------------------- the query time

def test_prometheus_is_asked_at_its_own_time_whatever_the_daemon_clock(monkeypatch):
    """The tick's ``now`` (here a fake clock's) goes to decide; Prometheus is asked with
    no time, so it answers at its own now."""
    from tests.autoscaler.test_daemon import IAS, World, pod

    w = World(monkeypatch, [pod("a", "ready")])
    asked = []
    fake = signals.read_signals
    monkeypatch.setattr(signals, "read_signals", lambda c, sp, at, **kw: asked.append(at) or fake(c, sp, at, **kw))
    seen = []
    d = w.daemon()
    d.on_decision = lambda key, now, obs, dec: seen.append(now)
    d.reconcile(IAS, 12.5)
    assert PROMETHEUS_NOW is None and asked == [None] and seen == [12.5]
