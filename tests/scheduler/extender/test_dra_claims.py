"""The extender counts GPU memory that the real kube-scheduler's DRA allocator gave a
ResourceClaim, on the test bed's real control plane: a pod whose claim got 20Gi of GPU 3
(of driver gpu.gpusched.io) makes the extender's /debug/nodes show that memory held, and
a gpusched share pod asking 70Gi is not placed on GPU 3 (59 GiB free there) until the
claim's pod is gone.

The node is a kwok node of the test's own, tainted so that no other test places there,
with 4 of the recorded H100s: GPUs 0-2 busy (the report shows 79 GiB used on each), GPU
3 idle. So GPU 3 is the only GPU where the 70Gi share could go, and the claim is the one
thing that keeps it off: the share waits, then binds to GPU 3 once the claim is released.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from scheduler import contract
from scheduler.agent.dra.apiserver import SlicePublisher
from scheduler.agent.dra.devices import slice_name
from scheduler.kube.client import raw
from scheduler.nodeinfo import GPU, NodeReport, annotations_for
from tests.deploy import manifests
from tests.helpers import eventually, fresh_name
from tests.scheduler.agent.dra.gpus import h100s

pytestmark = pytest.mark.integration

R = "/apis/resource.k8s.io/v1"
GiB, MiB = 2**30, 2**20
GPUS = h100s()[:4]
TAINT = {"key": "gpusched.io/test", "value": "dra-claims", "effect": "NoSchedule"}


@pytest.fixture
def dra_node(cluster, core, gpusched):
    """A kwok node with GPUs 0-3 of the recording, reported by UUID (busy 0-2, idle 3) and
    published as the agent would publish them; the chart's DeviceClass applied. A gpusched
    annotation share waits beside the claim: the legacy path, on by extender.annotationShares=true."""
    manifests.apply(cluster, annotation_shares=True)
    name = fresh_name("dra-claims")
    body = node_body(NodeSpec(name, 4, "NVIDIA-H100-80GB-HBM3", H100_MIB))
    report = NodeReport(gpus=tuple(GPU(g.index, g.uuid, g.memory_usable, 0 if g.index == 3 else 79 * GiB,
                                       product="NVIDIA-H100-80GB-HBM3") for g in GPUS),
                        reported_at=datetime.now(timezone.utc))
    body["metadata"]["annotations"].update(annotations_for(report))
    body["spec"]["taints"] = [TAINT]
    core.create_node(body)
    admin = cluster.api_client()
    pub = SlicePublisher(admin, name, resync_s=600)
    assert pub.publish(GPUS), pub.last_error
    # a pod refused for a node the extender's watches have not shown yet waits for a later
    # cluster event (make_node in test_claim_share_race.py)
    eventually(lambda: gpusched.debug_node(name).get("draDevices") == len(GPUS), timeout=30,
               what=f"the extender read {name} and its devices")
    yield name
    raw(admin, "DELETE", f"{R}/resourceslices/{slice_name(name)}")
    core.delete_node(name)


def _pinned(spec: dict, node: str) -> dict:
    spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
    spec["tolerations"] = [{**TAINT, "operator": "Equal"}]
    spec["terminationGracePeriodSeconds"] = 0
    return spec


def test_a_dra_claims_memory_is_held_for_the_extender(cluster, core, gpusched, namespace, dra_node):
    admin = cluster.api_client()
    # a claim for 20Gi of GPU 3 (the selector makes the allocator's choice certain)
    tmpl = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": "gpu3-20gi"},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
                "deviceClassName": contract.DRA_DRIVER, "capacity": {"requests": {"memory": "20Gi"}},
                "selectors": [{"cel": {"expression": f'device.attributes["{contract.DRA_DRIVER}"].index == 3'}}]}}]}}}}
    raw(admin, "POST", f"{R}/namespaces/{namespace}/resourceclaimtemplates", tmpl)
    holder = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dra-holder"},
              "spec": _pinned({"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu3-20gi"}],
                               "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0",
                                               "resources": {"claims": [{"name": "gpu"}]}}]}, dra_node)}
    raw(admin, "POST", f"/api/v1/namespaces/{namespace}/pods", holder)  # default scheduler: DRA allocates

    def allocated():
        _, p = raw(admin, "GET", f"/api/v1/namespaces/{namespace}/pods/dra-holder")
        statuses = p.get("status", {}).get("resourceClaimStatuses") or []
        if not p["spec"].get("nodeName") or not statuses:
            return None
        _, c = raw(admin, "GET", f"{R}/namespaces/{namespace}/resourceclaims/{statuses[0]['resourceClaimName']}")
        return c if c and c.get("status", {}).get("allocation") else None
    claim = eventually(allocated, timeout=60, what="dra-holder bound with its claim allocated")
    [res] = claim["status"]["allocation"]["devices"]["results"]
    assert (res["pool"], res["device"], res["consumedCapacity"]) == \
        (dra_node, GPUS[3].uuid.lower(), {"memory": "20Gi"})

    # the extender shows GPU 3 holding the claim's 20480 MiB, under the claim's name
    key = f"claim:{namespace}/{claim['metadata']['name']}#3"

    def held():
        info = gpusched.debug_node(dra_node) or {}
        gpu3 = next((g for g in info.get("gpus", []) if g["index"] == 3), None)
        return info if gpu3 and gpu3["committedMiB"] == 20480 and key in info.get("pods", {}) else None
    info = eventually(held, timeout=20, what="the extender counts the claim on GPU 3")
    gpu3 = next(g for g in info["gpus"] if g["index"] == 3)
    # the report's 81079 MiB (85017493504 B, whole MiB) - 20 GiB = 60599 MiB free < 70 GiB = 71680 MiB
    assert (gpu3["totalMiB"], gpu3["freeMiB"]) == (GPUS[3].memory_usable // MiB, 81079 - 20480)
    assert info["pods"][key] == {"gpus": [3], "memoryPerGPU": 20 * GiB, "inferred": False}

    # a gpusched share of 70Gi: GPUs 0-2 are busy, GPU 3 has 59 GiB free: it waits
    share = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "share-70gi", "annotations": {contract.GPU_MEMORY: "70Gi"}},
             "spec": _pinned({"schedulerName": contract.SCHEDULER_NAME,
                              "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0"}]}, dra_node)}
    core.create_namespaced_pod(namespace, share)

    def refused():
        evs = core.list_namespaced_event(namespace, field_selector="involvedObject.name=share-70gi").items
        return [e.message for e in evs if e.reason == "FailedScheduling"]
    messages = eventually(refused, timeout=30, what="share-70gi refused")
    assert core.read_namespaced_pod("share-70gi", namespace).spec.node_name is None, messages

    # the claim released (its pod deleted; kube-controller-manager deletes the claim): GPU 3 is the share's
    core.delete_namespaced_pod("dra-holder", namespace, grace_period_seconds=0)
    eventually(lambda: raw(admin, "GET", f"{R}/namespaces/{namespace}/resourceclaims/"
                                         f"{claim['metadata']['name']}")[0] == 404, timeout=60, what="claim deleted")
    p = eventually(lambda: (p := core.read_namespaced_pod("share-70gi", namespace)).spec.node_name and p,
                   timeout=60, what="share-70gi bound once the claim is gone")
    assert p.spec.node_name == dra_node
    assert p.metadata.annotations[contract.GPU_IDS] == "3"
