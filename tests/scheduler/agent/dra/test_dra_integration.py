"""The DRA driver end to end on the test bed's real control plane: the plugin (as the chart's
gpusched-dra-plugin ServiceAccount, through its RBAC and admission policy) publishes a kwok node's
GPUs as a ResourceSlice, the chart's DeviceClass selects them, the real kube-scheduler's
allocator places pods whose ResourceClaimTemplates ask for a 20Gi share or a whole GPU,
and the allocated claims, as the API server holds them, go to the plugin's
NodePrepareResources through a gRPC client of the kubelet's vendored protos.

The test bed runs no kubelet (kwok plays the nodes), so the gRPC client stands where the
kubelet would call; it sends what the kubelet sends: the claim's namespace, name and UID.
"""
from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import replace

import grpc
import pytest
from kubernetes.client.exceptions import ApiException

from scheduler.agent.dra import cdi
from scheduler.agent.dra.apiserver import ClaimReader, SlicePublisher
from scheduler.agent.dra.devices import slice_name
from scheduler.agent.dra.kubeletapi.dra.v1 import api_pb2 as dra_pb
from scheduler.agent.dra.kubeletapi.dra.v1 import api_pb2_grpc as dra_grpc
from scheduler.agent.dra.plugin import DraPlugin, serve
from scheduler.kube.client import raw
from tests.deploy import manifests
from tests.helpers import eventually
from tests.scheduler.agent.dra.gpus import h100s

pytestmark = pytest.mark.integration

NODE = "gpu-node-0003"  # a kwok node of the session's cluster (tests/conftest.py)
GPUS = h100s()
R = "/apis/resource.k8s.io/v1"


def as_plugin(cluster, node: str | None, sa: str = "gpusched-dra-plugin"):
    """The DRA plugin's identity: its ServiceAccount with the node its bound token would name."""
    api = cluster.api_client()
    api.default_headers["Impersonate-User"] = manifests.sa_user(sa)
    if node is not None:
        api.default_headers["Impersonate-Extra-" + urllib.parse.quote("authentication.kubernetes.io/node-name",
                                                                      safe="")] = node
    return api


def _slice_denied(cluster, token_node: str, slice_node: str) -> bool:
    body = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": f"dra-it-probe-{os.getpid()}"},
            "spec": {"driver": "gpu.gpusched.io", "nodeName": slice_node,
                     "pool": {"name": slice_node, "generation": 1, "resourceSliceCount": 1}, "devices": []}}
    try:
        raw(as_plugin(cluster, token_node), "POST", f"{R}/resourceslices", body)
    except ApiException as exc:
        if exc.status == 403 and "may write only that node's ResourceSlices" in str(exc.reason):
            return True
        raise AssertionError(f"{exc.status} {exc.reason}") from None
    raw(cluster.api_client(), "DELETE", f"{R}/resourceslices/dra-it-probe-{os.getpid()}")
    return False


@pytest.fixture(scope="module")
def chart(cluster):
    manifests.apply(cluster)  # the DeviceClass, the plugin's RBAC and admission policies, with the rest
    # the API server loads a new policy asynchronously: wait until it denies another node's slice
    eventually(lambda: _slice_denied(cluster, NODE, "gpu-node-0002"), timeout=60, what="slice policy enforced")
    yield
    raw(cluster.api_client(), "DELETE", f"{R}/resourceslices/{slice_name(NODE)}")
    r = cluster.kubectl("delete", "--ignore-not-found", "deviceclass/gpu.gpusched.io",
                        "validatingadmissionpolicybinding/gpusched-agent-own-resourceslice",
                        "validatingadmissionpolicy/gpusched-agent-own-resourceslice")
    assert r.returncode == 0, r.stderr


@pytest.fixture
def plugin(cluster, tmp_path):
    """The plugin as the chart runs it on NODE, reading claims as its ServiceAccount; a kubelet-side stub."""
    specs = cdi.SpecDir(tmp_path / "cdi")
    server, _ = serve(DraPlugin(NODE, ClaimReader(as_plugin(cluster, NODE)), lambda: GPUS, specs), tmp_path / "p", None)
    channel = grpc.insecure_channel(f"unix://{tmp_path / 'p' / 'dra.sock'}")
    yield dra_grpc.DRAPluginStub(channel), specs
    channel.close()
    server.stop(None)


def template(name: str, memory: str | None) -> dict:
    exactly: dict = {"deviceClassName": "gpu.gpusched.io"}
    if memory is not None:
        exactly["capacity"] = {"requests": {"memory": memory}}
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": name},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": exactly}]}}}}


def pod(name: str, tmpl: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": tmpl}],
                     "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0",
                                     "resources": {"claims": [{"name": "gpu"}]}}],
                     "terminationGracePeriodSeconds": 0}}


def allocated_claim(api, ns: str, pod_name: str) -> tuple[dict, dict]:
    """(pod, its claim) once the pod is bound and its claim allocated."""
    def ready():
        _, p = raw(api, "GET", f"/api/v1/namespaces/{ns}/pods/{pod_name}")
        statuses = p.get("status", {}).get("resourceClaimStatuses") or []
        if not p["spec"].get("nodeName") or not statuses:
            return None
        _, c = raw(api, "GET", f"{R}/namespaces/{ns}/resourceclaims/{statuses[0]['resourceClaimName']}")
        return (p, c) if c and c.get("status", {}).get("allocation") else None
    return eventually(ready, timeout=60, what=f"{pod_name} bound with its claim allocated")


def prepare(stub, claim: dict):
    m = claim["metadata"]
    req = dra_pb.NodePrepareResourcesRequest(claims=[dra_pb.Claim(namespace=m["namespace"], name=m["name"],
                                                                  uid=m["uid"])])
    return stub.NodePrepareResources(req, timeout=30).claims[m["uid"]]


def env_of(specs: cdi.SpecDir, uid: str) -> dict[str, str]:
    [dev] = json.loads(specs.path(uid).read_text())["devices"]
    return dict(e.split("=", 1) for e in dev["containerEdits"]["env"])


def test_kube_scheduler_allocates_the_agents_gpus_and_the_plugin_prepares_exactly_them(cluster, chart, namespace,
                                                                                       plugin):
    admin = cluster.api_client()
    stub, specs = plugin
    # the plugin publishes NODE's 8 GPUs, as itself; the agent no longer holds that right
    assert SlicePublisher(as_plugin(cluster, NODE, sa="gpusched-agent"), NODE).publish(GPUS) is False
    clock = [0.0]
    pub = SlicePublisher(as_plugin(cluster, NODE), NODE, resync_s=600, clock=lambda: clock[0])
    assert pub.publish(GPUS), pub.last_error
    # deleted behind its back: written again at the next resync (600 s), not before
    raw(admin, "DELETE", f"{R}/resourceslices/{slice_name(NODE)}")
    clock[0] = 599
    assert pub.publish(GPUS) and raw(admin, "GET", f"{R}/resourceslices/{slice_name(NODE)}")[0] == 404
    clock[0] = 600
    assert pub.publish(GPUS), pub.last_error
    _, s = raw(admin, "GET", f"{R}/resourceslices/{slice_name(NODE)}")
    assert s["spec"]["nodeName"] == NODE and len(s["spec"]["devices"]) == 8
    assert [(o["kind"], o["name"]) for o in s["metadata"]["ownerReferences"]] == [("Node", NODE)]  # get nodes
    assert all(d["allowMultipleAllocations"] and d["capacity"]["memory"]["value"] == "85017493504"
               for d in s["spec"]["devices"])
    # ... and may not publish another node's
    assert _slice_denied(cluster, NODE, "gpu-node-0001")

    for t in (template("share-20gi", "20Gi"), template("whole-gpu", None)):
        raw(admin, "POST", f"{R}/namespaces/{namespace}/resourceclaimtemplates", t)
    raw(admin, "POST", f"/api/v1/namespaces/{namespace}/pods", pod("share", "share-20gi"))
    p, share = allocated_claim(admin, namespace, "share")
    assert p["spec"]["nodeName"] == NODE  # the only node with gpu.gpusched.io devices
    [res] = share["status"]["allocation"]["devices"]["results"]
    assert (res["driver"], res["pool"], res["consumedCapacity"]) == ("gpu.gpusched.io", NODE, {"memory": "20Gi"})
    assert res.get("shareID")

    out = prepare(stub, share)
    assert out.error == ""
    assert [(d.pool_name, d.device_name, d.share_id) for d in out.devices] == \
        [(res["pool"], res["device"], res["shareID"])]
    gpu = next(g for g in GPUS if g.uuid.lower() == res["device"])
    env = env_of(specs, share["metadata"]["uid"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == env["CUDA_VISIBLE_DEVICES"] == gpu.uuid  # exactly its GPU
    assert env["GPUSCHED_GPU_MEMORY_BYTES"] == str(20 * 2**30)  # and its cap: 21474836480 B
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20480M"

    # a whole GPU: kube-scheduler gives it all of one device's memory, so never the share's GPU
    raw(admin, "POST", f"/api/v1/namespaces/{namespace}/pods", pod("whole", "whole-gpu"))
    _, whole = allocated_claim(admin, namespace, "whole")
    [wres] = whole["status"]["allocation"]["devices"]["results"]
    assert wres["device"] != res["device"]
    assert wres["consumedCapacity"] == {"memory": "85017493504"}
    wout = prepare(stub, whole)
    assert wout.error == ""
    assert [(d.pool_name, d.device_name, d.share_id if d.HasField("share_id") else None) for d in wout.devices] == \
        [(wres["pool"], wres["device"], wres.get("shareID"))]
    wenv = env_of(specs, whole["metadata"]["uid"])
    assert wenv["NVIDIA_VISIBLE_DEVICES"] == next(g.uuid for g in GPUS if g.uuid.lower() == wres["device"])
    assert "GPUSCHED_GPU_MEMORY_BYTES" not in wenv

    # a GPU that turns unhealthy leaves the slice, under the pool's next generation
    sick = [replace(g, healthy=False) if g.index == 7 else g for g in GPUS]
    assert pub.publish(sick), pub.last_error
    _, s = raw(admin, "GET", f"{R}/resourceslices/{slice_name(NODE)}")
    assert s["spec"]["pool"]["generation"] == 2 and len(s["spec"]["devices"]) == 7
    assert GPUS[7].uuid.lower() not in {d["name"] for d in s["spec"]["devices"]}

    # the share's claim, fed to another node's plugin, is refused
    other = DraPlugin("gpu-node-0001", ClaimReader(as_plugin(cluster, "gpu-node-0001")), lambda: GPUS, specs)
    m = share["metadata"]
    assert "allocated in pool 'gpu-node-0003', this is node 'gpu-node-0001'" in \
        other.prepare(m["namespace"], m["name"], m["uid"]).error


def test_the_dra_only_daemon_registers_publishes_and_prepares(cluster, chart, core, namespace, tmp_path):
    """`gpusched agent --dra-only` as a process, as the chart's gpusched-dra-plugin runs it (GPUs from the recorded 8x H100 node: no GPU here),
    on a kwok node of its own with no nvidia.com/gpu, so the session's other tests never
    place there."""
    import signal
    import subprocess
    import sys

    from benchmarks.testbed.nodes import node_body
    from benchmarks.testbed.profiles import NodeSpec
    from scheduler.agent.dra.kubeletapi.pluginregistration.v1 import api_pb2 as reg_pb
    from scheduler.agent.dra.kubeletapi.pluginregistration.v1 import api_pb2_grpc as reg_grpc
    from tests.scheduler.agent.dra.gpus import DATA

    node = f"dra-agent-{os.getpid() % 10000}"
    core.create_node(node_body(NodeSpec(node, 0, "none", 0)))
    admin = cluster.api_client()
    dirs = {k: tmp_path / k for k in ("plugin", "registry", "cdi")}
    agent = subprocess.Popen(
        [sys.executable, "-m", "scheduler.agent", "--dra-only", "--node-name", node,
         "--kubeconfig", str(cluster.kubeconfig), "--nvml-recording", str(DATA / "nvml-8xh100-10gib.json"),
         "--metrics-port", "0", "--interval", "1", "--dra-plugin-dir", str(dirs["plugin"]),
         "--dra-registry-dir", str(dirs["registry"]), "--cdi-dir", str(dirs["cdi"])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        reg_sock = dirs["registry"] / "gpu.gpusched.io-reg.sock"
        eventually(reg_sock.exists, timeout=30, what="the registration socket")
        with grpc.insecure_channel(f"unix://{reg_sock}") as ch:
            info = reg_grpc.RegistrationStub(ch).GetInfo(reg_pb.InfoRequest(), timeout=10)
        assert (info.name, info.endpoint, list(info.supported_versions)) == \
            ("gpu.gpusched.io", str(dirs["plugin"] / "dra.sock"), ["v1.DRAPlugin"])

        def published():
            status, s = raw(admin, "GET", f"{R}/resourceslices/{slice_name(node)}")
            return s if status == 200 and len(s["spec"]["devices"]) == 8 else None
        eventually(published, timeout=30, what="the agent's ResourceSlice")

        raw(admin, "POST", f"{R}/namespaces/{namespace}/resourceclaimtemplates", template("share-8gi", "8Gi"))
        body = pod("pinned", "share-8gi")
        body["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
        raw(admin, "POST", f"/api/v1/namespaces/{namespace}/pods", body)
        _, share = allocated_claim(admin, namespace, "pinned")
        [res] = share["status"]["allocation"]["devices"]["results"]
        assert res["pool"] == node

        with grpc.insecure_channel(f"unix://{dirs['plugin'] / 'dra.sock'}") as ch:
            out = prepare(dra_grpc.DRAPluginStub(ch), share)
        assert out.error == "" and [d.device_name for d in out.devices] == [res["device"]]
        env = env_of(cdi.SpecDir(dirs["cdi"]), share["metadata"]["uid"])
        assert env["CUDA_VISIBLE_DEVICES"] == next(g.uuid for g in GPUS if g.uuid.lower() == res["device"])
        assert env["GPUSCHED_GPU_MEMORY_BYTES"] == str(8 * 2**30)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            log = agent.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            agent.kill()
            log = agent.communicate()[0]
        raw(admin, "DELETE", f"{R}/resourceslices/{slice_name(node)}")
        core.delete_node(node)
    assert agent.returncode == 0, log[-3000:]
