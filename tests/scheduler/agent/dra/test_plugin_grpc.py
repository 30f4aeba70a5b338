"""The DRA kubelet plugin through the kubelet's own gRPC API: a client built from the same
vendored protos (k8s.io/kubelet@v0.36.3 dra/v1 and pluginregistration/v1) calls the
plugin over its unix sockets, as the kubelet does, and the CDI spec it wrote is read back.

GPUs: the recorded 8x H100 node (memory_total 85520809984 B, usable 85017493504 B each).
"""
from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from scheduler.agent.dra import cdi
from scheduler.agent.dra.kubeletapi.dra.v1 import api_pb2 as dra_pb
from scheduler.agent.dra.kubeletapi.dra.v1 import api_pb2_grpc as dra_grpc
from scheduler.agent.dra.kubeletapi.pluginregistration.v1 import api_pb2 as reg_pb
from scheduler.agent.dra.kubeletapi.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from scheduler.agent.dra.plugin import DraPlugin, serve
from tests.scheduler.agent.dra.gpus import claim, h100s, result

NODE = "gpu-node-7"
GPUS = h100s()
DEV = [g.uuid.lower() for g in GPUS]  # device names: the UUIDs, lowercased
UID_SHARE = "0b6f3d52-9c1e-4a27-8d1f-5e2a7c9b1001"
UID_WHOLE = "0b6f3d52-9c1e-4a27-8d1f-5e2a7c9b1002"
UID_OTHER = "0b6f3d52-9c1e-4a27-8d1f-5e2a7c9b1003"


@pytest.fixture
def bed(tmp_path: Path):
    """The plugin serving on unix sockets under tmp_path; claims from `store` by (ns, name)."""
    store: dict[tuple[str, str], dict] = {}
    specs = cdi.SpecDir(tmp_path / "cdi")
    plugin = DraPlugin(NODE, lambda ns, name: store.get((ns, name)), lambda: GPUS, specs)
    server, registration = serve(plugin, tmp_path / "plugin", tmp_path / "registry")
    dra = grpc.insecure_channel(f"unix://{tmp_path / 'plugin' / 'dra.sock'}")
    reg = grpc.insecure_channel(f"unix://{tmp_path / 'registry' / 'gpu.gpusched.io-reg.sock'}")
    yield {"store": store, "specs": specs, "dra": dra_grpc.DRAPluginStub(dra), "reg": reg_grpc.RegistrationStub(reg),
           "registration": registration, "dir": tmp_path}
    dra.close()
    reg.close()
    server.stop(None)


def prepare(bed, *claims: tuple[str, str, str]) -> dict:
    req = dra_pb.NodePrepareResourcesRequest(claims=[dra_pb.Claim(namespace=ns, name=n, uid=u) for ns, n, u in claims])
    return bed["dra"].NodePrepareResources(req, timeout=10).claims


def spec_env(bed, uid: str) -> dict[str, str]:
    spec = json.loads(bed["specs"].path(uid).read_text())
    assert spec["cdiVersion"] == "0.6.0" and spec["kind"] == "gpu.gpusched.io/claim"
    [dev] = spec["devices"]
    assert dev["name"] == uid
    return dict(e.split("=", 1) for e in dev["containerEdits"]["env"])


def test_registration_names_the_driver_and_the_v1_service(bed):
    info = bed["reg"].GetInfo(reg_pb.InfoRequest(), timeout=10)
    assert (info.type, info.name, list(info.supported_versions)) == ("DRAPlugin", "gpu.gpusched.io", ["v1.DRAPlugin"])
    assert info.endpoint == str(bed["dir"] / "plugin" / "dra.sock")
    bed["reg"].NotifyRegistrationStatus(reg_pb.RegistrationStatus(plugin_registered=True), timeout=10)
    assert bed["registration"].registered is True


def test_a_share_gets_exactly_its_gpu_and_its_memory_cap(bed):
    # 20Gi of GPU 3: 21474836480 B; vLLM fraction 21474836480 * 1000 // 85520809984 = 251 -> 0.251
    bed["store"][("team-a", "llama-gpu")] = claim(UID_SHARE, [result(DEV[3], NODE, memory="20Gi", share_id="s-1")])
    [(uid, resp)] = prepare(bed, ("team-a", "llama-gpu", UID_SHARE)).items()
    assert uid == UID_SHARE and resp.error == ""
    assert [(d.pool_name, d.device_name, list(d.request_names), d.share_id, list(d.cdi_device_ids))
            for d in resp.devices] == [(NODE, DEV[3], ["gpu"], "s-1", [f"gpu.gpusched.io/claim={UID_SHARE}"])]
    env = spec_env(bed, UID_SHARE)
    assert env == {
        "NVIDIA_VISIBLE_DEVICES": GPUS[3].uuid,
        "CUDA_VISIBLE_DEVICES": GPUS[3].uuid,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "GPUSCHED_CLAIM": "team-a/llama-gpu",
        "GPUSCHED_GPU_MEMORY_BYTES": "21474836480",
        "GPUSCHED_GPU_MEMORY_UTILIZATION": "0.251",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=20480M",
    }


def test_a_whole_gpu_claims_devices_equal_its_allocation(bed):
    # two whole GPUs (no capacity requested: each consumes all 85017493504 usable bytes), listed 5 then 1
    alloc = [result(DEV[5], NODE, memory="85017493504"), result(DEV[1], NODE, memory="85017493504")]
    bed["store"][("team-a", "llama-70b")] = claim(UID_WHOLE, alloc, name="llama-70b")
    resp = prepare(bed, ("team-a", "llama-70b", UID_WHOLE))[UID_WHOLE]
    assert resp.error == ""
    assert sorted((d.pool_name, d.device_name) for d in resp.devices) == sorted((r["pool"], r["device"]) for r in alloc)
    assert not any(d.HasField("share_id") for d in resp.devices)  # no shareID in the allocation: none back
    env = spec_env(bed, UID_WHOLE)
    assert env["NVIDIA_VISIBLE_DEVICES"] == f"{GPUS[1].uuid},{GPUS[5].uuid}"  # PCI order
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"]
    assert not any(k.startswith(("GPUSCHED_GPU_MEMORY", "CUDA_MPS")) for k in env)  # the whole GPU, no cap


def test_prepare_is_idempotent_and_unprepare_removes_the_spec(bed):
    bed["store"][("team-a", "llama-gpu")] = claim(UID_SHARE, [result(DEV[0], NODE, memory="10Gi")])
    first = prepare(bed, ("team-a", "llama-gpu", UID_SHARE))[UID_SHARE]
    text = bed["specs"].path(UID_SHARE).read_text()
    again = prepare(bed, ("team-a", "llama-gpu", UID_SHARE))[UID_SHARE]
    assert again == first and bed["specs"].path(UID_SHARE).read_text() == text
    req = dra_pb.NodeUnprepareResourcesRequest(claims=[dra_pb.Claim(namespace="team-a", name="llama-gpu",
                                                                    uid=UID_SHARE)])
    for _ in range(2):  # the second finds nothing to remove: still no error
        out = bed["dra"].NodeUnprepareResources(req, timeout=10).claims
        assert list(out) == [UID_SHARE] and out[UID_SHARE].error == ""
        assert not bed["specs"].path(UID_SHARE).exists()


#   claim in the API server (None: absent)                  request (ns, name, uid)          -> error contains
BAD = [
    (claim(UID_OTHER, [result(DEV[0], "gpu-node-9", memory="1Gi")]),
     ("team-a", "llama-gpu", UID_OTHER), "allocated in pool 'gpu-node-9', this is node 'gpu-node-7'"),
    (claim(UID_OTHER, [result("gpu-0", NODE, driver="gpu.nvidia.com")]),
     ("team-a", "llama-gpu", UID_OTHER), "no device of driver gpu.gpusched.io in its allocation (drivers: gpu.nvidia.com)"),
    (claim(UID_OTHER, [result("gpu-5a1c09e2-7d3b-4c1f-9e0a-3f6b2c81d400", NODE)]),
     ("team-a", "llama-gpu", UID_OTHER), "no healthy GPU 'gpu-5a1c09e2-7d3b-4c1f-9e0a-3f6b2c81d400' on node"),
    (claim(UID_OTHER, [result(DEV[2], NODE, memory="100Gi")]),     # 107374182400 > 85017493504
     ("team-a", "llama-gpu", UID_OTHER), "consumes 100Gi of memory, the GPU has 85017493504 bytes"),
    (claim(UID_OTHER, [result(DEV[2], NODE, memory="50Gi", request="a"), result(DEV[2], NODE, memory="50Gi", request="b")]),
     ("team-a", "llama-gpu", UID_OTHER), "consume 107374182400 bytes of"),          # 2 x 50Gi on one GPU
    (claim(UID_OTHER, [result(DEV[2], NODE, memory="0")]),
     ("team-a", "llama-gpu", UID_OTHER), "must be positive"),
    (claim(UID_SHARE, [result(DEV[2], NODE, memory="1Gi")]),     # recreated under the same name
     ("team-a", "llama-gpu", UID_OTHER), "has uid '0b6f3d52-9c1e-4a27-8d1f-5e2a7c9b1001' (deleted and recreated?)"),
    ({**claim(UID_OTHER, []), "status": {}}, ("team-a", "llama-gpu", UID_OTHER), "not allocated"),
    (None, ("team-a", "llama-gpu", UID_OTHER), "not found"),
    (None, ("team-a", "llama-gpu", "../../etc/passwd"), "claim uid '../../etc/passwd' is not a UUID"),
    (None, ("Team_A", "llama-gpu", UID_OTHER), "claim namespace 'Team_A'"),
    (claim(UID_OTHER, [{**result(DEV[2], NODE), "device": ["gpu-0"]}]),   # not even a string
     ("team-a", "llama-gpu", UID_OTHER), "no healthy GPU ['gpu-0'] on node"),
]


def test_two_requests_sharing_one_gpu_are_two_devices_and_one_cap(bed):
    # 30Gi + 10Gi of GPU 6 by requests a and b: 42949672960 B in all, fraction 502 -> 0.502
    bed["store"][("team-a", "llama-gpu")] = claim(UID_SHARE, [
        result(DEV[6], NODE, memory="30Gi", request="a", share_id="s-a"),
        result(DEV[6], NODE, memory="10Gi", request="b", share_id="s-b")])
    resp = prepare(bed, ("team-a", "llama-gpu", UID_SHARE))[UID_SHARE]
    assert [(list(d.request_names), d.device_name, d.share_id) for d in resp.devices] == \
        [(["a"], DEV[6], "s-a"), (["b"], DEV[6], "s-b")]
    env = spec_env(bed, UID_SHARE)
    assert (env["NVIDIA_VISIBLE_DEVICES"], env["GPUSCHED_GPU_MEMORY_BYTES"], env["GPUSCHED_GPU_MEMORY_UTILIZATION"]) \
        == (GPUS[6].uuid, "42949672960", "0.502")


@pytest.mark.parametrize("stored, ref, error", BAD, ids=[e[:40] for _, _, e in BAD])
def test_a_bad_claim_is_refused_with_its_reason_and_nothing_written(bed, stored, ref, error):
    if stored is not None:
        bed["store"][(ref[0], ref[1])] = stored
    resp = prepare(bed, ref)
    assert list(resp) == [ref[2]]
    assert error in resp[ref[2]].error and resp[ref[2]].error.startswith("refused: ")
    assert not list(resp[ref[2]].devices)
    assert bed["specs"].claims() == []


def test_one_bad_claim_does_not_fail_the_others_in_the_call(bed):
    bed["store"][("team-a", "llama-gpu")] = claim(UID_SHARE, [result(DEV[4], NODE, memory="8Gi")])
    out = prepare(bed, ("team-a", "llama-gpu", UID_SHARE), ("team-a", "gone", UID_OTHER))
    assert out[UID_SHARE].error == "" and [d.device_name for d in out[UID_SHARE].devices] == [DEV[4]]
    assert "not found" in out[UID_OTHER].error
    assert bed["specs"].claims() == [UID_SHARE]


def test_a_claim_reader_that_fails_is_an_error_in_the_response_not_a_dead_server(tmp_path):
    def broken(ns, name):
        raise ConnectionError("API server unreachable")
    server, _ = serve(DraPlugin(NODE, broken, lambda: GPUS, cdi.SpecDir(tmp_path / "cdi")), tmp_path / "p", None)
    with grpc.insecure_channel(f"unix://{tmp_path / 'p' / 'dra.sock'}") as ch:
        stub = dra_grpc.DRAPluginStub(ch)
        req = dra_pb.NodePrepareResourcesRequest(claims=[dra_pb.Claim(namespace="a", name="b", uid=UID_SHARE)])
        for _ in range(2):
            assert "ConnectionError: API server unreachable" in stub.NodePrepareResources(req, timeout=10).claims[
                UID_SHARE].error
    server.stop(None)
