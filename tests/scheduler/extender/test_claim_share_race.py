"""Annotation shares and claim pods (gpusched pods asking gpu.gpusched.io by ResourceClaim)
on one node, on the test bed's real control plane: the real kube-scheduler with DRA (its
allocator picks the claim pods' GPUs and writes the claims in PreBind), the resourceclaim
controller of the real kube-controller-manager (claims from templates), kwok nodes, and
the extender.

Checked in the API's records only (pods' gpu-ids and gpu-memory annotations, claims'
allocations): per GPU, annotation shares + claims' consumed memory never exceed the GPU.
An H100 of the recording has 81079 MiB (79.18 GiB): three 20Gi pods fit, a fourth does not.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from scheduler import contract
from scheduler.agent.dra.apiserver import SlicePublisher
from scheduler.agent.dra.devices import slice_name
from scheduler.claim_template import claim_template
from scheduler.core.beside_claims import WHOLE_BESIDE_CLAIMS
from scheduler.kube.client import raw
from scheduler.nodeinfo import GPU, NodeReport, annotations_for
from scheduler.quantity import parse_bytes
from tests.deploy import manifests
from tests.helpers import eventually, fresh_name
from tests.scheduler.agent.dra.gpus import h100s

pytestmark = pytest.mark.integration

R = "/apis/resource.k8s.io/v1"
GiB = 2**30
TAINT = {"key": "gpusched.io/test", "value": "claim-share-race", "effect": "NoSchedule"}


@pytest.fixture
def make_node(cluster, core, gpusched):
    """make_node(n): a kwok node with the recording's first n H100s, idle, reported by UUID
    and published as the agent publishes them; the chart's DeviceClass applied. It returns
    once the extender has read the node and its devices: a pod the extender refuses for a
    node its watches have not shown yet is retried by kube-scheduler only on a later cluster
    event, and a quiet test bed may have none for minutes."""
    # annotation shares beside claim pods: the legacy path, on by extender.annotationShares=true
    manifests.apply(cluster, annotation_shares=True)
    admin = cluster.api_client()
    made: list[str] = []

    def make(n: int) -> tuple[str, tuple]:
        gpus = h100s()[:n]
        name = fresh_name("claim-race")
        body = node_body(NodeSpec(name, n, "NVIDIA-H100-80GB-HBM3", H100_MIB))
        report = NodeReport(gpus=tuple(GPU(g.index, g.uuid, g.memory_usable, 0, product="NVIDIA-H100-80GB-HBM3")
                                       for g in gpus), reported_at=datetime.now(timezone.utc))
        body["metadata"]["annotations"].update(annotations_for(report))
        body["spec"]["taints"] = [TAINT]
        core.create_node(body)
        made.append(name)
        pub = SlicePublisher(admin, name, resync_s=600)
        assert pub.publish(gpus), pub.last_error
        eventually(lambda: gpusched.debug_node(name).get("draDevices") == n, timeout=30,
                   what=f"the extender read {name} and its {n} devices")
        return name, gpus
    yield make
    for name in made:
        raw(admin, "DELETE", f"{R}/resourceslices/{slice_name(name)}")
        core.delete_node(name)


def _spec(node: str | list[str], **extra) -> dict:
    nodes = [node] if isinstance(node, str) else node  # one term each: a field selector takes one value
    return {"schedulerName": contract.SCHEDULER_NAME, "terminationGracePeriodSeconds": 0,
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]} for n in nodes]}}},
            "tolerations": [{**TAINT, "operator": "Equal"}],
            "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0", **extra.pop("container", {})}],
            **extra}


def share_pod(name: str, node: str, memory: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": {contract.GPU_MEMORY: memory}},
            "spec": _spec(node)}


def claim_pod(name: str, node: str, template: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": _spec(node, resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": template}],
                          container={"resources": {"claims": [{"name": "gpu"}]}})}


def template(admin, namespace: str, name: str, memory: str | None) -> None:
    """A share of `memory`, or one whole GPU, as `gpusched claim-template` prints it."""
    body = claim_template(memory=memory, name=name) if memory else claim_template(gpus=1, name=name)
    raw(admin, "POST", f"{R}/namespaces/{namespace}/resourceclaimtemplates", body)


def records(admin, namespace: str, node: str, gpus) -> dict[int, list[tuple[str, int]]]:
    """Who holds what on each GPU of `node`, in the API's records: bound pods' gpu-ids with
    their gpu-memory, and every allocated claim's devices with their consumed memory."""
    by_device = {g.uuid.lower(): g.index for g in gpus}
    held: dict[int, list[tuple[str, int]]] = {g.index: [] for g in gpus}
    for p in raw(admin, "GET", f"/api/v1/namespaces/{namespace}/pods")[1]["items"]:
        ann = p["metadata"].get("annotations") or {}
        if p["spec"].get("nodeName") == node and contract.GPU_MEMORY in ann:
            for i in ann[contract.GPU_IDS].split(","):
                held[int(i)].append((p["metadata"]["name"], parse_bytes(ann[contract.GPU_MEMORY])))
    for c in raw(admin, "GET", f"{R}/namespaces/{namespace}/resourceclaims")[1]["items"]:
        for r in ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results", []):
            if r["driver"] == contract.DRA_DRIVER and r["pool"] == node:
                memory = (r.get("consumedCapacity") or {}).get("memory")
                total = next(g.memory_usable for g in gpus if g.uuid.lower() == r["device"])
                held[by_device[r["device"]]].append(
                    ("claim:" + c["metadata"]["name"], parse_bytes(memory) if memory else total))
    return held


def over_committed(held, gpus) -> dict[int, list]:
    return {g.index: held[g.index] for g in gpus if sum(b for _, b in held[g.index]) > g.memory_usable}


def failed_scheduling(core, namespace: str, pod: str) -> list[str]:
    evs = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod}").items
    return [e.message for e in evs if e.reason == "FailedScheduling"]


def bound(core, namespace: str) -> dict[str, str]:
    return {p.metadata.name: p.spec.node_name for p in core.list_namespaced_pod(namespace).items if p.spec.node_name}


def test_shares_and_claim_pods_interleaved_never_over_commit_a_gpu(cluster, core, gpusched, namespace, make_node):
    admin = cluster.api_client()
    node, gpus = make_node(4)  # 4 x 81079 MiB: twelve 20Gi pods at most
    template(admin, namespace, "share-20gi", "20Gi")
    names = []
    for i in range(8):  # 16 pods for 12 places, created back to back: share, claim, share, claim...
        core.create_namespaced_pod(namespace, share_pod(f"share-{i}", node, "20Gi"))
        core.create_namespaced_pod(namespace, claim_pod(f"claim-{i}", node, "share-20gi"))
        names += [f"share-{i}", f"claim-{i}"]

    def settled():
        """Every pod bound or refused, and no bind for 8 s."""
        now = bound(core, namespace)
        if any(n not in now and not failed_scheduling(core, namespace, n) for n in names):
            return None
        time.sleep(8)
        return now if bound(core, namespace) == now else None
    placed = eventually(settled, timeout=180, interval=1, what="all 16 pods bound or refused, and stable")

    held = records(admin, namespace, node, gpus)
    assert over_committed(held, gpus) == {}, held
    # shares are kept off full GPUs only: all 8 bind, or all 12 places are taken
    assert 8 <= len(placed) <= 12, placed
    # every bound claim pod holds its claim on the node, recorded in the claim alone (no gpu-ids)
    for n in (n for n in placed if n.startswith("claim-")):
        p = core.read_namespaced_pod(n, namespace)
        assert contract.GPU_IDS not in (p.metadata.annotations or {}), n
        [cs] = p.status.resource_claim_statuses
        assert any(c == "claim:" + cs.resource_claim_name for gpu in held.values() for c, _ in gpu), n
    # every pod left Pending was told why by kube-scheduler
    for n in (n for n in names if n not in placed):
        assert failed_scheduling(core, namespace, n), n
    claims = sum(n.startswith("claim-") for n in placed)
    why = {m for n in names if n not in placed for m in failed_scheduling(core, namespace, n)}
    print(f"bound {len(placed)} of 16 ({claims} claim pods); pending because: {sorted(why)[:3]}; per GPU: "
          + "; ".join(f"GPU {i}: {sum(b for _, b in h) >> 20} MiB by {len(h)}" for i, h in held.items()))


def test_a_claim_pod_that_fits_only_where_the_allocator_would_over_commit_waits(
        cluster, core, gpusched, namespace, make_node):
    """Two GPUs: a whole-GPU claim pod takes one, a 70Gi share the other. A 20Gi claim pod
    would fit only on the share's GPU as kube-scheduler's allocator sees it (the share is
    invisible to it): gpusched refuses the node and says why; once the share is gone it binds."""
    admin = cluster.api_client()
    node, gpus = make_node(2)
    template(admin, namespace, "whole", None)
    template(admin, namespace, "share-20gi", "20Gi")
    core.create_namespaced_pod(namespace, claim_pod("whole", node, "whole"))
    eventually(lambda: bound(core, namespace).get("whole"), timeout=60, what="the whole-GPU claim pod bound")
    core.create_namespaced_pod(namespace, share_pod("share-70gi", node, "70Gi"))
    eventually(lambda: bound(core, namespace).get("share-70gi"), timeout=60, what="the 70Gi share bound")
    held = records(admin, namespace, node, gpus)
    whole_gpu = next(i for i, h in held.items() if any(n.startswith("claim:") for n, _ in h))
    share_gpu = 1 - whole_gpu
    assert held[share_gpu] == [("share-70gi", 70 * GiB)], held

    core.create_namespaced_pod(namespace, claim_pod("late", node, "share-20gi"))
    messages = eventually(lambda: [m for m in failed_scheduling(core, namespace, "late")
                                   if "kube-scheduler's allocator could give 20Gi" in m],
                          timeout=60, what="the 20Gi claim pod refused by gpusched")
    assert f"(GPU {share_gpu})" in messages[0] and "after gpusched's annotation shares" in messages[0], messages
    time.sleep(3)  # retried meanwhile: still Pending, and nothing over-committed
    assert "late" not in bound(core, namespace)
    assert over_committed(records(admin, namespace, node, gpus), gpus) == {}

    core.delete_namespaced_pod("share-70gi", namespace, grace_period_seconds=0)
    # kube-scheduler retries a pod an extender refused on its next cluster event; the share's
    # deletion may reach it before the extender's watch, and the retry be refused once more.
    # Once the extender has seen the deletion, one more event (a Node update) retries it.
    eventually(lambda: not any(k.endswith("/share-70gi") for k in gpusched.debug_node(node).get("pods", {})),
               timeout=30, what="the extender saw the share go")
    core.patch_node(node, {"metadata": {"labels": {"gpusched.io/test-poke": "1"}}})
    eventually(lambda: bound(core, namespace).get("late"), timeout=60, what="the claim pod bound once the share left")
    held = records(admin, namespace, node, gpus)
    assert [b for n, b in held[share_gpu]] == [20 * GiB] and over_committed(held, gpus) == {}, held


def test_whole_gpu_pods_stay_off_a_node_where_claims_hold_gpus(cluster, core, gpusched, namespace, make_node):
    """The device plugin hands out nvidia.com/gpu without seeing claims: with a 20Gi claim
    share on one node, a whole-GPU pod that may go to either node goes to the other, and
    one pinned to the claimed node stays Pending with gpusched's reason. The pinned one has
    the higher priority: the refusal is unresolvable, so kube-scheduler's preemption does not
    try the claimed node (with FailedNodes it would, find no victim among pods its own
    plugins already fit beside, and fail with "expected at least one victim pod")."""
    admin = cluster.api_client()
    claimed, _ = make_node(2)
    other, _ = make_node(2)
    template(admin, namespace, "share-20gi", "20Gi")
    core.create_namespaced_pod(namespace, claim_pod("claim-0", claimed, "share-20gi"))
    eventually(lambda: bound(core, namespace).get("claim-0") == claimed, timeout=60, what="the claim pod bound")
    high = fresh_name("beside-claims-high")
    status, _ = raw(admin, "POST", "/apis/scheduling.k8s.io/v1/priorityclasses",
                    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": high},
                     "value": 1000})
    assert status == 201, status
    try:
        whole = {"resources": {"limits": {contract.GPU_RESOURCE: "1"}}}
        for name, nodes, extra in (("whole-any", [claimed, other], {}),
                                   ("whole-pinned", [claimed], {"priorityClassName": high})):
            core.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                                   "spec": _spec(nodes, container=dict(whole), **extra)})
        eventually(lambda: bound(core, namespace).get("whole-any") == other, timeout=60,
                   what="the whole-GPU pod bound to the node without claims")
        eventually(lambda: any(WHOLE_BESIDE_CLAIMS in m for m in failed_scheduling(core, namespace, "whole-pinned")),
                   timeout=60, what="the pinned whole-GPU pod refused with gpusched's reason")
        said = [m for m in failed_scheduling(core, namespace, "whole-pinned") if WHOLE_BESIDE_CLAIMS in m]
        assert all("Preemption is not helpful for scheduling" in m and "victim" not in m for m in said), said
        assert "whole-pinned" not in bound(core, namespace)
        claim0 = core.read_namespaced_pod("claim-0", namespace)
        assert claim0.spec.node_name == claimed and claim0.metadata.deletion_timestamp is None
        assert not core.read_namespaced_pod("whole-pinned", namespace).status.nominated_node_name
    finally:
        core.delete_namespaced_pod("whole-pinned", namespace, grace_period_seconds=0)
        raw(admin, "DELETE", f"/apis/scheduling.k8s.io/v1/priorityclasses/{high}")
