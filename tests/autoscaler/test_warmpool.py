"""The warm pool as tables: pods in, promotions, demotions and replicas out.

Pods are written as short codes: name:STATE[@created[/loaded_since]][#hash]
STATE: R ready serving, P pending serving (promoted, not Ready), W warm (loaded, gate
absent), D demoted (loaded, gate False), L loading (gate absent), X deleting,
U ungated and Ready, u ungated not Ready.
"""
from __future__ import annotations

import pytest

from autoscaler.warmpool import (GONE, LOADING, PENDING, READY, WARM, PodView, count, plan, pod_view,
                                 template_hash_of_newest)
from scheduler.contract import SERVING_GATE


def pods(*codes: str) -> list[PodView]:
    out = []
    for c in codes:
        name, rest = c.split(":")
        h = ""
        if "#" in rest:
            rest, h = rest.split("#")
        created, since = 0.0, None
        if "@" in rest:
            rest, t = rest.split("@")
            if "/" in t:
                t, s = t.split("/")
                since = float(s)
            created = float(t)
        kw = dict(name=name, created=created, template_hash=h)
        kw.update({
            "R": dict(serving=True, ready=True, loaded=True),
            "P": dict(serving=True, ready=False, loaded=False),
            "W": dict(serving=None, loaded=True, loaded_since=since),
            "D": dict(serving=False, loaded=True, loaded_since=since),
            "L": dict(serving=None, loaded=False),
            "X": dict(serving=True, ready=True, loaded=True, deleting=True),
            "U": dict(gated=False, ready=True, loaded=True),
            "u": dict(gated=False, ready=False, loaded=False),
        }[rest])
        out.append(PodView(**kw))
    return out


# (id, pods, serving, warm, current_hash, promote, demote, replicas)
PLANS = [
    ("steady", pods("a:R", "b:W"), 1, 1, None, (), (), 2),
    # 1 serving, 1 warm: nothing to do; replicas 1 + 1
    ("burst-promotes-warm", pods("a:R", "b:W@5/10", "c:W@1/20"), 3, 1, None, ("b", "c"), (), 4),
    # need 3 - 1 = 2; both warm pods, longest warm first (b loaded at 10, c at 20); replicas 3 + 1 refill
    ("burst-warm-then-loading", pods("a:R", "b:W@5/10", "c:L@2", "d:L@1"), 4, 1, None, ("b", "d", "c"), (), 5),
    # need 3: the loaded b, then loading pods oldest first (d created 1, c created 2)
    ("burst-more-than-pods", pods("a:R", "b:W"), 5, 1, None, ("b",), (), 6),
    # need 4, only b exists: promote b; the ReplicaSet makes 6 - 2 = 4 new pods, promoted next tick
    ("down-demotes-newest", pods("a:R@1", "b:R@3", "c:R@2", "d:W"), 1, 1, None, (), ("b", "c"), 2),
    # serving 3 -> 1: demote the 2 newest (b@3, c@2), keep a@1; replicas 1 + 1: the ReplicaSet deletes 2 of
    # the 3 not-Ready pods (d, b, c); a stays in traffic
    ("down-pending-first", pods("a:R@1", "b:R@3", "c:P@2"), 2, 0, None, (), ("c",), 2),
    # serving 3 -> 2: c is not Ready yet (not in traffic): demote it rather than the newer, Ready b
    ("refill-only", pods("a:R", "b:R"), 2, 2, None, (), (), 4),
    # the pool is empty: replicas 2 + 2, the new pods start warm
    ("deleting-ignored", pods("a:R", "b:X", "c:W"), 2, 0, None, ("c",), (), 2),
    # b is terminating: it counts nowhere; c is promoted to reach 2
    ("demoted-counts-as-warm", pods("a:R", "b:D@1/50"), 2, 0, None, ("b",), (), 2),
    # a demoted pod is loaded and can be promoted again
    ("no-gate-no-pool", pods("a:U", "b:U"), 3, 1, None, (), (), 3),
    # pods without the gate serve as soon as Ready; the pool is off: replicas = 3, not 4
    ("rollout-swap", pods("a:R@1#old", "b:R@2#old", "c:W@3/9#new"), 2, 1, "new", ("c",), ("b",), 3),
    # c (current template) is loaded: swap it for the newest old-template pod b; the Deployment
    # controller then retires b's ReplicaSet pods
    ("rollout-promote-current-first", pods("a:R#old", "b:W@1/1#old", "c:W@2/5#new"), 2, 0, "new", ("c",), (), 2),
    # need 1: the current template's c goes first, although b has been warm longer
    ("min-zero", pods("a:R", "b:W"), 0, 1, None, (), ("a",), 1),
    # scale to zero serving, keep one warm: demote a; the ReplicaSet keeps one of the two (not Ready) pods
]


@pytest.mark.parametrize("name,pl,serving,warm,h,promote,demote,replicas", PLANS, ids=[r[0] for r in PLANS])
def test_plan(name, pl, serving, warm, h, promote, demote, replicas):
    p = plan(pl, serving, warm, h)
    assert p.promote == promote
    assert p.demote == demote
    assert p.replicas == replicas
    assert p.serving == len([v for v in pl if v.state in ("ready", "pending")]) + len(promote) - len(demote)


def test_down_demotes_newest_explicitly():
    p = plan(pods("a:R@1", "b:R@3", "c:R@2", "d:W"), 1, 1)
    assert p.promote == ()
    assert p.demote == ("b", "c")  # newest first
    assert p.shrink_after == ("b", "c")  # both Ready now: shrink once they show not Ready
    assert p.serving == 1


def test_equal_age_demotes_the_last_promoted():
    a = PodView("a", created=1, serving=True, ready=True, loaded=True, serving_since=10)
    b = PodView("b", created=1, serving=True, ready=True, loaded=True, serving_since=50)
    assert plan([a, b], 1, 0).demote == ("b",)
    assert plan([b, a], 1, 0).demote == ("b",)


def test_pending_demotion_needs_no_wait():
    p = plan(pods("a:R@1", "b:R@3", "c:P@2"), 2, 0)
    assert p.demote == ("c",) and p.shrink_after == ()


def test_ungated_pods_are_noted():
    p = plan(pods("a:U", "b:W"), 2, 1)
    assert p.warm == 0 and p.replicas == 2
    assert p.promote == ("b",)  # a gated pod can still be promoted
    assert any("lack readinessGate" in n for n in p.notes)


def test_negative_targets_refused():
    with pytest.raises(ValueError):
        plan([], -1, 0)


# (id, pods, last_target, ready, pending, warm, loading)
COUNTS = [
    ("plain", pods("a:R", "b:P", "c:W", "d:L"), None, 1, 1, 1, 1),
    ("claimed-loading", pods("a:R", "b:L", "c:L", "d:L"), 3, 1, 2, 0, 1),
    # last target 3, 1 serving: 2 of the 3 loading pods were asked for by the last scale-up -> pending
    ("claim-capped", pods("a:R", "b:L"), 4, 1, 1, 0, 0),
    ("no-claim-when-met", pods("a:R", "b:R", "c:L"), 2, 2, 0, 0, 1),
    ("deleting-and-ungated", pods("a:X", "b:U", "c:u"), None, 1, 1, 0, 0),
]


@pytest.mark.parametrize("name,pl,last,ready,pending,warm,loading", COUNTS, ids=[r[0] for r in COUNTS])
def test_count(name, pl, last, ready, pending, warm, loading):
    c = count(pl, last)
    assert (c.ready, c.pending, c.warm, c.loading) == (ready, pending, warm, loading)
    assert c.current == ready + pending


def _pod(conds, gates=True, deleting=False, phase="Running", hash_="h1"):
    meta = {"name": "p", "creationTimestamp": "2025-01-01T00:00:00Z", "labels": {"pod-template-hash": hash_}}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:01:00Z"
    spec = {"nodeName": "n1"}
    if gates:
        spec["readinessGates"] = [{"conditionType": SERVING_GATE}]
    return {"metadata": meta, "spec": spec,
            "status": {"phase": phase, "conditions": [{"type": t, "status": s, "lastTransitionTime":
                                                       "2025-01-01T00:00:30Z"} for t, s in conds]}}


@pytest.mark.parametrize("conds,gates,deleting,phase,state", [
    ([("ContainersReady", "True"), ("Ready", "False")], True, False, "Running", WARM),
    ([("ContainersReady", "False"), ("Ready", "False")], True, False, "Pending", LOADING),
    ([("ContainersReady", "True"), ("Ready", "True"), (SERVING_GATE, "True")], True, False, "Running", READY),
    ([("ContainersReady", "True"), ("Ready", "False"), (SERVING_GATE, "True")], True, False, "Running", PENDING),
    ([("ContainersReady", "True"), ("Ready", "True"), (SERVING_GATE, "False")], True, False, "Running", WARM),
    ([("ContainersReady", "True"), ("Ready", "True")], False, False, "Running", READY),
    ([("Ready", "True"), (SERVING_GATE, "True")], True, True, "Running", GONE),
    ([], True, False, "Failed", GONE),
], ids=["warm", "loading", "ready", "promoted", "demoted-still-ready", "ungated", "deleting", "failed"])
def test_pod_view(conds, gates, deleting, phase, state):
    v = pod_view(_pod(conds, gates, deleting, phase))
    assert v.state == state
    assert v.template_hash == "h1" and v.node == "n1"
    assert v.created == 1735689600.0
    if state == WARM:
        assert v.loaded_since == 1735689630.0


def test_newest_replicaset():
    def rs(h, rev, uid="d1"):
        return {"metadata": {"labels": {"pod-template-hash": h},
                             "annotations": {"deployment.kubernetes.io/revision": str(rev)},
                             "ownerReferences": [{"uid": uid, "controller": True}]}}
    assert template_hash_of_newest([rs("a", 1), rs("b", 3), rs("c", 2), rs("z", 9, uid="other")], "d1") == "b"
    assert template_hash_of_newest([], "d1") is None
