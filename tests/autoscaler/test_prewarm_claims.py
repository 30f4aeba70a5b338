"""Pre-warming sees the GPU memory claim shares hold (issue 13): on the test bed's real API
server, a ResourceClaim of gpu.gpusched.io allocated 20Gi of GPU 0 on the node that caches the
model (its status written as kube-scheduler's allocator writes it). A replica of 8 whole GPUs no
longer fits there, so pre-warm picks another node and asks it to prefetch. Without the claims
the cached node looks empty and nothing would be asked."""
from __future__ import annotations

import json

import pytest

from autoscaler.prewarm import Prewarmer
from scheduler import contract
from scheduler.kube.client import raw
from scheduler.nodeinfo import CachedModel, encode_models, report_from_annotations
from tests.helpers import gpu_deployment

pytestmark = pytest.mark.integration

R = "/apis/resource.k8s.io/v1"
MODEL = "org/prewarm-claims"
CACHED = "gpu-node-0001"


def allocate(admin, namespace: str, node: str, device: str, memory: str) -> None:
    """A claim share of `memory` on `device` of `node`, allocated as kube-scheduler's PreBind leaves it."""
    request = {"name": "gpu", "exactly": {"deviceClassName": contract.DRA_DRIVER,
                                          "capacity": {"requests": {"memory": memory}}}}
    code, claim = raw(admin, "POST", f"{R}/namespaces/{namespace}/resourceclaims",
                      {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "share"},
                       "spec": {"devices": {"requests": [request]}}})
    assert code == 201, claim
    claim["status"] = {"allocation": {
        "devices": {"results": [{"request": "gpu", "driver": contract.DRA_DRIVER, "pool": node, "device": device,
                                 "shareID": "3f2d6c1a-0b7e-4f7b-9d3a-5c1e2b4a6d8f",
                                 "consumedCapacity": {"memory": memory}}]},
        "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
    code, body = raw(admin, "PUT", f"{R}/namespaces/{namespace}/resourceclaims/share/status", claim)
    assert code == 200, body


def test_prewarm_counts_claim_shares_on_the_cached_node(cluster, core, namespace):
    admin = cluster.api_client()
    before = dict(core.read_node(CACHED).metadata.annotations or {})
    others = {n.metadata.name: (n.metadata.annotations or {}).get(contract.PREFETCH) for n in core.list_node().items}
    gpu0 = report_from_annotations(before).gpus[0]
    core.patch_node(CACHED, {"metadata": {"annotations": {
        contract.MODEL_CACHE: encode_models([CachedModel(MODEL, 16 << 30, "disk")])}}})
    dep = {"spec": {"template": gpu_deployment("x", 1, gpus=8)["spec"]["template"]}}
    try:
        # without the claim the cached node takes the replica: nothing to prefetch
        assert Prewarmer(admin, stale_after_s=1e9).prewarm(dep, MODEL, 1, horizon_s=45).asked == ()
        allocate(admin, namespace, CACHED, gpu0.uuid.lower(), "20Gi")
        res = Prewarmer(admin, stale_after_s=1e9).prewarm(dep, MODEL, 1, horizon_s=45)
        (placement,) = res.choice.placements
        assert placement.node != CACHED and res.asked == (placement.node,), res.choice.reason
        entries = json.loads(core.read_node(placement.node).metadata.annotations[contract.PREFETCH])
        assert {"model": MODEL} in entries
    finally:
        core.patch_node(CACHED, {"metadata": {"annotations": {contract.MODEL_CACHE: before.get(contract.MODEL_CACHE)}}})
        for name, prefetch in others.items():
            core.patch_node(name, {"metadata": {"annotations": {contract.PREFETCH: prefetch}}})


def test_prewarm_reads_a_claim_share_deployments_ask_from_its_running_replica(cluster, core, namespace):
    """A Deployment whose share is a ResourceClaimTemplate (the chart's default): the template
    alone asks for no GPU gpusched reads; its running replica's claim (made from the template,
    named in the pod's status) says 20Gi, so pre-warm places one more replica as a 20Gi share."""
    admin = cluster.api_client()
    labels = {"app": "claim-share"}
    spec = {"schedulerName": "nobody", "nodeName": "gpu-node-0003",
            "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "share-20gi"}],
            "containers": [{"name": "c", "image": "busybox", "resources": {"claims": [{"name": "gpu"}]}}]}
    allocate(admin, namespace, "gpu-node-0003",
             report_from_annotations(core.read_node("gpu-node-0003").metadata.annotations).gpus[0].uuid.lower(), "20Gi")
    code, pod = raw(admin, "POST", f"/api/v1/namespaces/{namespace}/pods",
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "replica", "labels": labels}, "spec": spec})
    assert code == 201, pod
    pod["status"] = {**(pod.get("status") or {}), "resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "share"}]}
    code, body = raw(admin, "PUT", f"/api/v1/namespaces/{namespace}/pods/replica/status", pod)
    assert code == 200, body
    dep = {"metadata": {"namespace": namespace, "name": "claim-share"},
           "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels, "annotations": {contract.MODEL: MODEL}},
                                 "spec": {k: v for k, v in spec.items() if k != "nodeName"}}}}
    before = {n.metadata.name: (n.metadata.annotations or {}).get(contract.PREFETCH) for n in core.list_node().items}
    try:
        res = Prewarmer(admin, stale_after_s=1e9).prewarm(dep, MODEL, 1, horizon_s=45)
        (placement,) = res.choice.placements  # without the claim: "the pod template asks for no GPU"
        assert res.asked == (placement.node,), res.choice.reason
    finally:
        for name, prefetch in before.items():
            core.patch_node(name, {"metadata": {"annotations": {contract.PREFETCH: prefetch}}})
        core.delete_namespaced_pod("replica", namespace, grace_period_seconds=0)
