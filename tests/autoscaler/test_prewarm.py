"""Where to pre-warm: replicas placed one after the other as the extender would place
them; the nodes chosen that lack the model are the ones asked to prefetch it."""
from __future__ import annotations

import json

import pytest

from autoscaler.prewarm import (MIN_INTERVAL_S, Prewarmer, choose, claim_request, requested_nodes, selector_matches,
                                template_pod)
from scheduler import contract
from scheduler.core import PodRequest, Shape, parse_pod
from tests.scheduler.core.fixtures import GiB, node, snapshot, whole

M = "org/model"


@pytest.fixture
def snap():
    # 2 GPUs per node. n1 caches the model and is empty; n2 has one GPU taken (packing
    # prefers it over the empty n3); n4 is full.
    return snapshot(node("n1", 2, models={M: (16 * GiB, "disk")}),
                    node("n2", 2, allocs=[whole("x/a", 0)]),
                    node("n3", 2),
                    node("n4", 2, allocs=[whole("x/b", 0), whole("x/c", 1)]))


REQ = PodRequest(whole_gpus=1, model=M, model_bytes=16 * GiB)

# (replicas, nodes asked, where the replicas land)
ROWS = [
    (1, (), ["n1"]),  # the cached node has room: nothing to prefetch
    (2, (), ["n1", "n1"]),  # both fit on n1 (2 GPUs)
    (3, ("n2",), ["n1", "n1", "n2"]),  # n1 full after two; n2 (half used) packs before the empty n3
    (4, ("n2", "n3"), ["n1", "n1", "n2", "n3"]),
    (5, ("n2", "n3"), ["n1", "n1", "n2", "n3", "n3"]),  # n3 asked once for two replicas
    (6, ("n2", "n3"), ["n1", "n1", "n2", "n3", "n3"]),  # n4 is full: the 6th fits nowhere
]


@pytest.mark.parametrize("replicas,asked,where", ROWS, ids=[f"{r[0]}-replicas" for r in ROWS])
def test_choose(snap, replicas, asked, where):
    c = choose(snap, REQ, replicas)
    assert c.nodes == asked
    assert [p.node for p in c.placements] == where
    assert all(p.cached == (p.node == "n1") for p in c.placements)
    if replicas == 6:
        assert "no room for replica 6 of 6" in c.reason


def test_already_requested_nodes_are_not_asked_again(snap):
    c = choose(snap, REQ, 4, requested={"n2"})
    assert c.nodes == ("n3",)


@pytest.mark.parametrize("req,why", [
    (PodRequest(whole_gpus=1), "names no model"),
    (PodRequest(model=M), "asks for no GPU"),
])
def test_nothing_to_do(snap, req, why):
    c = choose(snap, req, 3)
    assert c.nodes == () and why in c.reason
    assert choose(snap, REQ, 0).nodes == ()


def test_template_pod_takes_the_spec_model():
    dep = {"spec": {"template": {"metadata": {"labels": {"app": "x"}},
                                 "spec": {"containers": [{"name": "s", "resources": {"limits": {
                                     "nvidia.com/gpu": "1"}}}]}}}}
    req = parse_pod(template_pod(dep, M))
    assert req.model == M and req.whole_gpus == 1
    dep["spec"]["template"]["metadata"]["annotations"] = {contract.MODEL: "other/m"}
    assert parse_pod(template_pod(dep, M)).model == "other/m"  # the pods' own annotation wins


def test_requested_nodes_reads_both_entry_forms():
    def n(name, value):
        return {"metadata": {"name": name, "annotations": {contract.PREFETCH: value}}}
    nodes = [n("a", json.dumps([{"model": M}])), n("b", json.dumps([M])), n("c", json.dumps(["x/y"])),
             n("d", "not json")]
    assert requested_nodes(nodes, M) == {"a", "b"}


def test_rate_limit_per_model():
    p = Prewarmer(api=None)
    assert p.due(M, 45, 1000.0)
    p._last[M] = 1000.0
    assert not p.due(M, 45, 1044.0)
    assert p.due(M, 45, 1045.0)
    assert not p.due(M, 5, 1000.0 + MIN_INTERVAL_S - 1)  # never more often than MIN_INTERVAL_S
    assert p.due("other/m", 45, 1001.0)


# ---------------------------------------------------------------- claim shares

def _claim(name: str, ns: str = "llm", *, memory: str | None = "38Gi", count: int = 1) -> dict:
    exactly: dict = {"deviceClassName": contract.DRA_DRIVER, "count": count}
    if memory:
        exactly["capacity"] = {"requests": {"memory": memory}}
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": exactly}]}},
            "status": {"allocation": {"devices": {"results": []}}}}  # allocated: its spec still says the ask


def _replica(name: str, claim: str | None, ns: str = "llm", labels: dict | None = None, rs: str | None = "qwen-x",
             more: tuple[str, ...] = ()) -> dict:
    """A running replica; rs: the ReplicaSet that made it (qwen-x is the Deployment qwen's, with
    the pod's pod-template-hash x); more: further claims of the pod."""
    owners = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "controller": True}] if rs else []
    refs = [{"name": "gpu", "resourceClaimTemplateName": "qwen-38gi"}] + [{"name": m, "resourceClaimTemplateName": m}
                                                                         for m in more]
    made = ([{"name": "gpu", "resourceClaimName": claim}] if claim else []) + [{"name": m, "resourceClaimName": m}
                                                                               for m in more]
    return {"metadata": {"namespace": ns, "name": name, "labels": labels or {"app": "qwen", "pod-template-hash": "x"},
                         "ownerReferences": owners},
            "spec": {"resourceClaims": refs}, "status": {"resourceClaimStatuses": made}}


TEMPLATE = {"metadata": {"labels": {"app": "qwen"}, "annotations": {contract.MODEL: M}},
            "spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "qwen-38gi"}]}}
GiB_ = 2**30


def _deployment(selector: dict | None = None) -> dict:
    return {"metadata": {"namespace": "llm", "name": "qwen"},
            "spec": {"selector": {"matchLabels": {"app": "qwen"}} if selector is None else selector,
                     "template": TEMPLATE}}


# another Deployment's replica whose labels are a superset of qwen's template labels
BIG = {"app": "qwen", "size": "big", "pod-template-hash": "y"}

# (running replicas, listed claims, the request read (whole GPUs, bytes per GPU), why not)
CLAIM_ROWS = [
    ([_replica("a", "a-gpu")], [_claim("a-gpu")], (0, 38 * GiB_), ""),  # a 38Gi share, as the extender scores it
    ([_replica("a", "a-gpu")], [_claim("a-gpu", memory=None, count=2)], (2, 0), ""),  # two whole devices
    ([_replica("a", None), _replica("b", "b-gpu")], [_claim("b-gpu")], (0, 38 * GiB_), ""),  # a's claim not made yet
    ([_replica("a", "a-gpu")], [], (0, 0), "no running replica's claims"),  # claim not listed
    ([], [], (0, 0), "no running replica's claims"),  # scaled to zero: templates are not read
    ([_replica("a", "a-gpu", ns="other")], [_claim("a-gpu", ns="other")], (0, 0), "no running replica"),
    ([_replica("a", "a-gpu", labels={"app": "llama"})], [_claim("a-gpu")], (0, 0), "no running replica"),
    ([_replica("a", "a-gpu")], [_claim("a-gpu", memory="-5Gi")], (0, 0), "the claims of a:"),
    # the selector decides, not the template's labels; qwen's own ReplicaSet's pods come first:
    # qwen-big's 80Gi replica also carries app=qwen and is listed first
    ([_replica("big", "big-gpu", labels=BIG, rs="qwen-big-y"), _replica("a", "a-gpu")],
     [_claim("big-gpu", memory="80Gi"), _claim("a-gpu")], (0, 38 * GiB_), ""),
    # a pod named like qwen's ReplicaSet but without its hash label is not taken for one of its own
    ([_replica("big", "big-gpu", labels=BIG, rs="qwen-x"), _replica("a", "a-gpu")],
     [_claim("big-gpu", memory="80Gi"), _claim("a-gpu")], (0, 38 * GiB_), ""),
    # a whole device plus a 38Gi share: a whole device for each ask (2), not the share alone
    ([_replica("a", "a-gpu", more=("w",))], [_claim("a-gpu"), _claim("w", memory=None)], (2, 0), ""),
    ([_replica("a", "a-gpu", more=("w",))], [_claim("a-gpu"), _claim("w", memory=None, count=2)], (3, 0), ""),
]


@pytest.mark.parametrize("pods,claims,want,why", CLAIM_ROWS)
def test_a_claim_share_template_asks_what_its_replicas_claims_ask(pods, claims, want, why):
    base = parse_pod(TEMPLATE)
    assert not base.gpu_pod  # the template alone asks for nothing gpusched reads
    got, reason = claim_request(base, TEMPLATE, _deployment(), pods, claims)
    assert (got.whole_gpus, got.gpu_memory) == want
    assert (why in reason) if why else reason == ""


SMALL = {"app": "qwen", "size": "small"}
# (qwen's spec.selector, the replica's labels, selected?) as Kubernetes evaluates a LabelSelector
SELECTOR_ROWS = [
    ({"matchLabels": {"app": "qwen"}}, SMALL, True),
    ({"matchLabels": {"app": "qwen", "size": "small"}}, BIG, False),
    ({"matchLabels": {"app": "qwen"}, "matchExpressions": [{"key": "size", "operator": "NotIn", "values": ["big"]}]},
     BIG, False),
    ({"matchExpressions": [{"key": "size", "operator": "NotIn", "values": ["big"]}]}, {"app": "qwen"}, True),  # absent
    ({"matchExpressions": [{"key": "size", "operator": "In", "values": ["small", "tiny"]}]}, SMALL, True),
    ({"matchExpressions": [{"key": "size", "operator": "In", "values": ["small"]}]}, {"app": "qwen"}, False),
    ({"matchExpressions": [{"key": "size", "operator": "Exists"}]}, SMALL, True),
    ({"matchExpressions": [{"key": "size", "operator": "DoesNotExist"}]}, SMALL, False),
    ({"matchExpressions": [{"key": "size", "operator": "Near", "values": ["small"]}]}, SMALL, False),  # invalid
    ({"matchExpressions": [{"operator": "Exists"}]}, SMALL, False),  # no key: invalid
    ({}, SMALL, False),  # Kubernetes refuses an empty Deployment selector: nothing is taken
    (None, SMALL, False),
    ("app=qwen", SMALL, False),  # not a LabelSelector object
]


@pytest.mark.parametrize("selector,labels,want", SELECTOR_ROWS)
def test_a_replica_is_one_the_deployments_selector_selects(selector, labels, want):
    assert selector_matches(selector, labels) is want
    pods, claims = [_replica("a", "a-gpu", labels=labels)], [_claim("a-gpu")]
    dep = _deployment(selector) if selector is not None else {"metadata": {"namespace": "llm", "name": "qwen"},
                                                                  "spec": {}}
    got, _ = claim_request(parse_pod(TEMPLATE), TEMPLATE, dep, pods, claims)
    assert got.gpu_memory == (38 * GiB_ if want else 0)


def test_an_annotation_or_whole_gpu_template_is_left_as_it_is():
    req = PodRequest(whole_gpus=1, model=M)
    assert claim_request(req, TEMPLATE, _deployment(), [_replica("a", "a-gpu")], [_claim("a-gpu")]) == (req, "")


# (nodes' CPU cores, the replica's CPU request in millicores, where two replicas land). The
# workload is 1-GPU pods asking 8 cores. n1 and n2 tie for the first replica (n1 by name);
# the second must see the cores the first took.
CPU_ROWS = [
    (12, 8000, ["n1", "n2"]),  # 12 - 8 = 4 < 8 left on n1: the second no longer fits there
    # 20 cores feed 2.5 of 4 GPUs. After the first, n1 has 12 (1.5 pods for 3 GPUs); a second
    # there leaves 4, no pod for its last 2 GPUs: +40 GiB; on n2, 1.5 unfed before and after: 0
    (20, 8000, ["n1", "n2"]),
    (32, 8000, ["n1", "n1"]),  # 32 - 8 = 24 left: both nodes feed all their GPUs, a tie: n1 by name
    # no CPU asked: each replica takes a GPU the node's 16 cores could not feed (2 pods for 4
    # GPUs), -80 GiB wherever it goes: a tie, n1 by name
    (16, 0, ["n1", "n1"]),
]


@pytest.mark.parametrize("cores,cpu_milli,where", CPU_ROWS)
def test_each_replica_takes_its_cpu_before_the_next_is_placed(cores, cpu_milli, where):
    s = snapshot(node("n1", 4, cpu=cores), node("n2", 4, cpu=cores))
    req = PodRequest(whole_gpus=1, model=M, cpu_milli=cpu_milli)
    c = choose(s, req, 2, shapes=(Shape(whole=1, weight=1.0, cpu_milli=8000),))
    assert [p.node for p in c.placements] == where, c.reason


def test_no_replica_is_planned_where_its_cpu_does_not_fit():
    """kube-scheduler's NodeResourcesFit keeps a pod off a node without its CPU; the plan does
    too: 12 cores asked of 8-core nodes land nowhere, and the reason says why."""
    s = snapshot(node("n1", 4, cpu=8), node("n2", 4, cpu=8))
    c = choose(s, PodRequest(whole_gpus=1, model=M, cpu_milli=12_000), 2, shapes=(Shape(whole=1, weight=1.0),))
    assert c.placements == () and "no room for replica 1 of 2" in c.reason
    assert "not enough free CPU or memory" in c.reason
