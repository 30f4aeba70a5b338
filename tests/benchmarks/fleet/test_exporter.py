"""The exporter without an API server: pod states, node GPUs, the pages Prometheus reads."""
from __future__ import annotations

import json

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.fleet.exporter import (FleetSimulator, Workload, node_gpus, pod_state, render, router_families,
                                       vllm_families)
from benchmarks.fleet.model import Fleet, Request, ServiceModel

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def pod(name, *, phase="Running", ready="True", node="n1", gates=False, deleting=False, gpus="1", ids=None,
        share=None):
    conds = [{"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": ready}]
    meta = {"name": name, "namespace": "ns", "annotations": {}}
    if ids:
        meta["annotations"]["gpusched.io/gpu-ids"] = ids
    if share:
        meta["annotations"]["gpusched.io/gpu-memory"] = share
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    limits = {"nvidia.com/gpu": gpus} if gpus else {}
    spec = {"nodeName": node, "containers": [{"name": "sidecar"}, {"name": "server", "resources": {"limits": limits}}]}
    if gates:
        spec["readinessGates"] = [{"conditionType": "gpusched.io/serving"}]
    return {"metadata": meta, "spec": spec, "status": {"phase": phase, "podIP": "10.0.0.7", "conditions": conds}}


POD_ROWS = [
    # (pod, running, ready)
    (pod("serving"), True, True),
    (pod("warm", ready="False", gates=True), True, False),  # loaded, held out by the readiness gate
    (pod("starting", phase="Pending", ready="False"), False, False),
    (pod("terminating", deleting=True), True, False),  # endpoints drop terminating pods
    (pod("unscheduled", phase="Pending", ready="False", node=""), False, False),
    (pod("done", phase="Succeeded", ready="False"), False, False),
]


@pytest.mark.parametrize("obj, running, ready", POD_ROWS, ids=[r[0]["metadata"]["name"] for r in POD_ROWS])
def test_pod_state(obj, running, ready):
    st = pod_state(obj)
    assert (st.running, st.ready) == (running, ready)


def test_pod_state_gpus():
    st = pod_state(pod("p", gpus="2", ids="3,5"))
    assert (st.gpus, st.gpu_ids, st.container, st.ip, st.node) == (2, (3, 5), "server", "10.0.0.7", "n1")
    assert not st.share  # whole GPUs: the container holding the devices, not the first
    assert pod_state(pod("p", ids="x,1")).gpu_ids is None
    sh = pod_state(pod("p", gpus=None, share="20Gi", ids="1"))
    assert (sh.gpus, sh.share, sh.gpu_memory_mib, sh.gpu_ids) == (0, True, 20480, (1,))
    assert not pod_state(pod("p", gpus=None, share="lots")).share  # unreadable: not a share


def test_node_gpus_from_report_then_labels():
    report = [{"index": i, "uuid": f"GPU-u{i}", "memoryTotalMiB": 81559, "memoryUsedMiB": 0} for i in range(2)]
    node = {"metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                         "annotations": {"gpusched.io/gpus": json.dumps(report)}}}
    g = node_gpus(node, "n1")
    assert g.product == "NVIDIA H100 80GB HBM3"  # GFD's dashes back to DCGM's spaces
    assert g.gpus == ((0, "GPU-u0", 81559), (1, "GPU-u1", 81559))
    labels_only = {"metadata": {"labels": {"nvidia.com/gpu.count": "2", "nvidia.com/gpu.memory": "40960"}}}
    assert node_gpus(labels_only, "n2").gpus == ((0, "GPU-n2-0", 40960), (1, "GPU-n2-1", 40960))
    assert node_gpus(None, "n3").gpus == ()


def parse(body: bytes) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def test_vllm_page_has_vllm_names_and_only_vllm_labels():
    f = Fleet()
    f.add_model("m", None, ServiceModel(max_batch=1))
    f.set_replica("r", "m", True, 0.0)
    for _ in range(3):
        f.submit("m", Request(0.0, 1000, 60))
    f.advance(2.0)
    fams = parse(render(vllm_families(f.metrics("r"), MODEL)))
    assert {"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
            "vllm:time_to_first_token_seconds", "vllm:request_success"} <= set(fams)
    (running,) = fams["vllm:num_requests_running"]
    assert running.labels == {"model_name": MODEL, "engine": "0"} and running.value == 1
    assert fams["vllm:num_requests_waiting"][0].value == 1
    ttft = {s.name: s for s in fams["vllm:time_to_first_token_seconds"] if s.labels.get("le") in (None, "+Inf")}
    # first token at 0.1 s and at 1.2 s; the third request has not started
    assert ttft["vllm:time_to_first_token_seconds_count"].value == 2
    assert ttft["vllm:time_to_first_token_seconds_sum"].value == pytest.approx(1.3)


def test_router_page_has_the_model_only():
    (s,) = parse(render(router_families(MODEL, 7)))["vllm:num_requests_waiting"]
    assert s.labels == {"model_name": MODEL} and s.value == 7


def test_pages_and_targets_without_an_api_server():
    """The simulator's routing and targets, pods fed by hand (start() is not called)."""
    w = Workload("ns", "app=llm", MODEL, service=ServiceModel(max_batch=1))
    sim = FleetSimulator(api=None, workloads=[w])
    sim._nodes["n1"] = node_gpus({"metadata": {"labels": {"nvidia.com/gpu.count": "2"}}}, "n1")
    with sim.lock:
        sim._apply(w, pod_state(pod("a")), deleted=False)
        sim._apply(w, pod_state(pod("warm", ready="False", gates=True)), deleted=False)
        sim.fleet.submit(w.key, Request(0.0, 100, 600))
        sim.fleet.submit(w.key, Request(0.0, 100, 600))
        sim.fleet.advance(1.0)
    sim._server_thread = None
    try:
        a = parse(sim.page("/metrics/ns/a"))
        assert a["vllm:num_requests_running"][0].value == 1 and a["vllm:num_requests_waiting"][0].value == 1
        warm = parse(sim.page("/metrics/ns/warm"))
        assert warm["vllm:num_requests_running"][0].value == 0  # gated out: no traffic
        router = parse(sim.page(f"/metrics/router/ns/{MODEL}"))
        assert router["vllm:num_requests_waiting"][0].value == 0
        dcgm = parse(sim.page("/metrics/dcgm/n1"))
        util = {s.labels.get("pod"): s for s in dcgm["DCGM_FI_DEV_GPU_UTIL"]}
        assert set(util) == {"a", "warm"}  # two GPUs, one each (sequential indices without gpu-ids)
        assert util["a"].labels["gpu"] == "0" and util["a"].labels["Hostname"] == "n1"
        assert util["a"].value == 100 and util["warm"].value == 0
        assert {s.labels["namespace"] for s in dcgm["DCGM_FI_DEV_FB_USED"]} == {"ns"}
        assert sim.page("/metrics/ns/nobody") is None and sim.page("/metrics/dcgm/n9") is None

        groups = sim.target_groups()
        paths = sorted(g[1]["__metrics_path__"] for g in groups)
        assert paths == ["/metrics/agent/n1", "/metrics/dcgm/n1", "/metrics/ns/a", "/metrics/ns/warm",
                         f"/metrics/router/ns/{MODEL}"]
        by_path = {g[1]["__metrics_path__"]: g[1] for g in groups}
        assert by_path["/metrics/ns/a"]["pod"] == "a" and by_path["/metrics/ns/a"]["namespace"] == "ns"
        router_labels = by_path[f"/metrics/router/ns/{MODEL}"]
        assert router_labels["model"] == MODEL and "pod" not in router_labels
        assert all(g[0] == [sim.address] for g in groups)

        # removing the serving pod: its queued request goes to the router (no Ready replica left)
        with sim.lock:
            sim._apply(w, pod_state(pod("a")), deleted=True)
        assert parse(sim.page(f"/metrics/router/ns/{MODEL}"))["vllm:num_requests_waiting"][0].value == 1
    finally:
        sim._server.server_close()


def test_dcgm_names_only_device_holders_and_the_agent_names_every_pod():
    """As dcgm-exporter's pod mapper (kubelet PodResources: containers with nvidia.com/gpu
    devices): the whole-GPU pod's GPU is labelled, the GPU two share pods use is not,
    even though gpusched's gpu-ids annotation says which GPU they are on."""
    w = Workload("ns", "app=llm", MODEL, service=ServiceModel(max_batch=1))
    sim = FleetSimulator(api=None, workloads=[w])
    sim._nodes["n1"] = node_gpus({"metadata": {"labels": {"nvidia.com/gpu.count": "3",
                                                          "nvidia.com/gpu.memory": "81559"}}}, "n1")
    with sim.lock:
        sim._apply(w, pod_state(pod("whole", ids="0")), deleted=False)
        sim._apply(w, pod_state(pod("s1", gpus=None, share="20Gi", ids="1")), deleted=False)
        sim._apply(w, pod_state(pod("s2", gpus=None, share="30Gi")), deleted=False)  # no gpu-ids: first free
        for _ in range(2):
            sim.fleet.submit(w.key, Request(0.0, 100, 600))
        sim.fleet.advance(1.0)
    busy = {k: sim.fleet.metrics(f"ns/{k}").gpu_util for k in ("whole", "s1", "s2")}
    assert sorted(busy.values()) == [0, 100, 100]  # two requests, batch 1: two servers busy
    try:
        dcgm = parse(sim.page("/metrics/dcgm/n1"))
        util = {s.labels["gpu"]: s for s in dcgm["DCGM_FI_DEV_GPU_UTIL"]}
        rows = [
            # (gpu, pod label, container label, utilisation = its pods' summed)
            ("0", "whole", "server", busy["whole"]),
            ("1", None, None, min(100, busy["s1"] + busy["s2"])),
            ("2", None, None, 0),
        ]
        for gpu, pod_label, container, value in rows:
            s = util[gpu]
            assert (s.labels.get("pod"), s.labels.get("container"), s.value) == (pod_label, container, round(value))
        used = {s.labels["gpu"]: s.value for s in dcgm["DCGM_FI_DEV_FB_USED"]}
        assert used == {"0": int(81559 * 0.9), "1": 20480 + 30720, "2": 0}

        agent = parse(sim.page("/metrics/agent/n1"))
        per_pod = {(s.labels["pod"], s.labels["gpu"]): s for s in agent["gpusched_pod_gpu_utilization"]}
        assert set(per_pod) == {("whole", "0"), ("s1", "1"), ("s2", "1")}
        assert per_pod[("s1", "1")].value == busy["s1"] and per_pod[("s1", "1")].labels["Hostname"] == "n1"
        mem = {s.labels["pod"]: s.value for s in agent["gpusched_pod_gpu_memory_used_bytes"]}
        assert mem["s2"] == 30720 * 2**20
        assert sim.page("/metrics/agent/n9") is None
    finally:
        sim._server.server_close()


def test_http_server_serves_pages_and_stops_its_threads():
    w = Workload("ns", "app=llm", MODEL)
    sim = FleetSimulator(api=None, workloads=[w])
    import threading
    sim._server_thread = threading.Thread(target=sim._server.serve_forever, kwargs={"poll_interval": 0.05})
    sim._server_thread.start()
    with sim.lock:
        sim._apply(w, pod_state(pod("a")), deleted=False)
    r = requests.get(f"{sim.url}/metrics/ns/a", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "vllm:num_requests_running{" in r.text
    assert requests.get(f"{sim.url}/metrics/ns/b", timeout=5).status_code == 404
    sim.stop()
    assert sim.threads_alive() == []


def test_clock_runs_at_speed():
    sim = FleetSimulator(api=None, workloads=[Workload("ns", "app=llm", MODEL)], speed=20.0, start_time=100.0)
    try:
        assert sim.sim_now() == 100.0  # not started
        import time
        sim._t0 = time.monotonic() - 0.5  # started half a wall second ago
        assert 110.0 <= sim.sim_now() < 112.0
    finally:
        sim._server.server_close()


@pytest.mark.parametrize("bad", [dict(workloads=[]), dict(speed=0), dict(tick=-1),
                                 dict(workloads=[Workload("ns", "a=b", MODEL), Workload("ns", "c=d", MODEL)])])
def test_bad_simulator_arguments(bad):
    kw = dict(api=None, workloads=[Workload("ns", "app=llm", MODEL)], **{k: v for k, v in bad.items()
                                                                          if k != "workloads"})
    if "workloads" in bad:
        kw["workloads"] = bad["workloads"]
    with pytest.raises(ValueError):
        FleetSimulator(**kw)
