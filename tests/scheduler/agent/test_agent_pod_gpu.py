"""Per-pod GPU use: cgroup text -> pod UID, recorded NVML process readings -> per-pod series."""
from __future__ import annotations

import pathlib
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.agent.metrics import POD_GPU_MEMORY, POD_GPU_UTIL, AgentMetrics
from scheduler.agent.nvml import GPUReader, RecordedNVML
from scheduler.agent.pod_gpu import PodGpuUsage, PodRef, pod_gpu_usage, pod_uid_from_cgroup
from scheduler.agent.pod_source import PodGpuSource, read_cgroups

DATA = pathlib.Path(__file__).parent / "data"
MiB = 2**20
UID_A = "8d1e6c1a-3f4b-4d2e-9a77-0b5c1e2f3a4b"
UID_B = "0c9a1b2d-7e6f-4a3b-8c2d-1e0f9a8b7c6d"
UID_C = "f00dbeef-1234-4cde-8abc-0123456789ab"

# /proc/<pid>/cgroup as kubelet's cgroup drivers leave it (containerd, cgroup v2 unless said)
CGROUP_ROWS = [
    # (what, text, pod UID)
    ("systemd burstable",
     f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_A.replace('-', '_')}.slice/"
     "cri-containerd-4f1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5.scope\n", UID_A),
    ("systemd besteffort",
     f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_B.replace('-', '_')}.slice/"
     "cri-containerd-aa.scope\n", UID_B),
    ("systemd guaranteed (no QoS slice)",
     f"0::/kubepods.slice/kubepods-pod{UID_C.replace('-', '_')}.slice/cri-containerd-bb.scope\n", UID_C),
    ("cgroupfs burstable", f"0::/kubepods/burstable/pod{UID_A}/4f1b2c3d4e5f\n", UID_A),
    ("cgroupfs guaranteed", f"0::/kubepods/pod{UID_C}/4f1b2c3d4e5f\n", UID_C),
    ("cgroup v1, one line per hierarchy",
     f"12:memory:/kubepods/besteffort/pod{UID_B}/abc\n11:cpu,cpuacct:/kubepods/besteffort/pod{UID_B}/abc\n"
     "1:name=systemd:/kubepods/besteffort/pod" + UID_B + "/abc\n", UID_B),
    ("seen from the agent's own cgroup namespace",
     f"0::/../../kubepods-burstable-pod{UID_A.replace('-', '_')}.slice/cri-containerd-cc.scope\n", UID_A),
    ("a host daemon", "0::/system.slice/nvidia-persistenced.service\n", None),
    ("the agent's own view without host cgroups", "0::/\n", None),
    ("empty (the process ended)", "", None),
    ("a pod-like name outside kubepods", f"0::/user.slice/pod{UID_A}/x\n", None),
]


@pytest.mark.parametrize("text, uid", [r[1:] for r in CGROUP_ROWS], ids=[r[0] for r in CGROUP_ROWS])
def test_pod_uid_from_cgroup(text, uid):
    assert pod_uid_from_cgroup(text) == uid


PODS = {UID_A: PodRef("llm", "a"), UID_B: PodRef("llm", "b"), UID_C: PodRef("llm", "c")}
CGROUPS = {  # the recording's pids (data/make_recordings.py, "shared")
    5101: CGROUP_ROWS[0][1],  # pod A, systemd
    5202: f"0::/kubepods/besteffort/pod{UID_B}/1a\n",  # pod B, cgroupfs
    5203: f"0::/kubepods/besteffort/pod{UID_B}/1b\n",
    777: CGROUP_ROWS[7][1],  # host
    6301: CGROUP_ROWS[2][1],  # pod C
}


def shared_gpus():
    reader = GPUReader(RecordedNVML.load(DATA / "nvml-8xh100-shared.json"))
    with reader:
        first = reader.read().gpus
        again = reader.read().gpus  # the same frame: no process sample newer than the first read's
    return first, again


def test_share_pods_get_memory_and_sm_share_from_process_readings():
    first, again = shared_gpus()
    assert first[0].process_utilization == ((777, 0.0), (5101, 40.0), (5202, 15.0), (5203, 5.0))
    assert first[2].process_utilization == ()  # NOT_FOUND: idle, not an error
    assert not first[2].errors
    usage = {(u.pod, u.gpu): u for u in pod_gpu_usage(first, CGROUPS, PODS)}
    rows = [
        # (pod, gpu, memory MiB, SM %)
        ("a", 0, 30720, 40.0),  # samples 35 and 45 average to 40
        ("b", 0, 20480 + 1024, 15.0 + 5.0),  # two processes of one pod add up
        ("c", 1, 72000, 90.0),  # a whole-GPU pod too (dcgm-exporter names it as well)
    ]
    assert set(usage) == {(p, g) for p, g, _, _ in rows}  # host pid 777 is nobody's
    for pod, gpu, mib, sm in rows:
        u = usage[(pod, gpu)]
        assert (u.namespace, u.memory_used, u.utilization) == ("llm", mib * MiB, sm)
        assert u.uuid == first[gpu].uuid
    # no new sample since the last read: utilisation unknown, memory still known
    later = {(u.pod, u.gpu): u for u in pod_gpu_usage(again, CGROUPS, PODS)}
    assert later[("a", 0)].utilization is None and later[("a", 0)].memory_used == 30720 * MiB


def test_unknown_pod_or_cgroup_is_left_out_not_misnamed():
    first, _ = shared_gpus()
    only_a = pod_gpu_usage(first, CGROUPS, {UID_A: PodRef("llm", "a")})
    assert [(u.pod, u.gpu) for u in only_a] == [("a", 0)]
    assert pod_gpu_usage(first, {}, PODS) == ()


def test_sm_share_is_capped_at_100():
    g = SimpleNamespace(index=0, uuid="GPU-x", lost=False, processes=(), process_utilization=((1, 70.0), (2, 45.0)))
    (u,) = pod_gpu_usage([g], {1: CGROUP_ROWS[3][1], 2: CGROUP_ROWS[3][1]}, PODS)
    assert (u.utilization, u.memory_used) == (100.0, None)


def test_metrics_export_per_pod_series_even_without_dcgm_series():
    first, _ = shared_gpus()
    m = AgentMetrics("node-1", gpu_metrics=False)  # dcgm-exporter runs here
    m.update(first, None, pod_gpu_usage(first, CGROUPS, PODS))
    fams = {f.name: f.samples for f in text_string_to_metric_families(generate_latest(m.registry).decode())}
    assert "DCGM_FI_DEV_GPU_UTIL" not in fams
    util = {s.labels["pod"]: s for s in fams[POD_GPU_UTIL]}
    assert util["b"].value == 20.0
    assert util["b"].labels == {"namespace": "llm", "pod": "b", "gpu": "0", "UUID": first[0].uuid,
                                "Hostname": "node-1"}
    mem = {s.labels["pod"]: s.value for s in fams[POD_GPU_MEMORY]}
    assert mem == {"a": 30720 * MiB, "b": 21504 * MiB, "c": 72000 * MiB}
    m.update(first, None, [PodGpuUsage("llm", "a", 0, "GPU-x", None, None)])
    fams = {f.name: f.samples for f in text_string_to_metric_families(generate_latest(m.registry).decode())}
    assert fams.get(POD_GPU_UTIL, []) == []  # unknown: no series, never 0


class Pods:
    def __init__(self, items):
        self.items, self.calls, self.fail = items, [], None

    def list_pod_for_all_namespaces(self, **kw):
        self.calls.append(kw)
        if self.fail:
            raise self.fail
        return SimpleNamespace(items=self.items)


def pod_obj(uid, ns, name):
    return SimpleNamespace(metadata=SimpleNamespace(uid=uid, namespace=ns, name=name))


def test_source_reads_proc_and_lists_pods_only_for_new_uids(tmp_path):
    for pid, text in CGROUPS.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    assert read_cgroups([5101, 999, -1], str(tmp_path)) == {5101: CGROUPS[5101]}  # 999 has ended
    first, _ = shared_gpus()
    api = Pods([pod_obj(UID_A, "llm", "a"), pod_obj(UID_B, "llm", "b")])
    now = [0.0]
    src = PodGpuSource(api, "node-1", proc_root=str(tmp_path), relist_s=30, clock=lambda: now[0])
    assert {u.pod for u in src.read(first)} == {"a", "b"}
    assert api.calls[0]["field_selector"] == "spec.nodeName=node-1"
    src.read(first)  # C is still unknown, but the last list is recent
    assert len(api.calls) == 1
    api.items.append(pod_obj(UID_C, "llm", "c"))
    now[0] = 31.0
    assert {u.pod for u in src.read(first)} == {"a", "b", "c"}
    now[0] = 100.0
    src.read(first)  # every UID known: no list
    assert len(api.calls) == 2


def test_source_without_rbac_exports_nothing_and_goes_on(tmp_path):
    (tmp_path / "5101").mkdir()
    (tmp_path / "5101" / "cgroup").write_text(CGROUPS[5101])
    api = Pods([])
    api.fail = RuntimeError("(403) Forbidden: pods is forbidden")
    first, _ = shared_gpus()
    assert PodGpuSource(api, "n", proc_root=str(tmp_path)).read(first) == ()


def test_agent_tick_exports_the_sources_per_pod_series(tmp_path):
    from scheduler.agent.daemon import Agent, AgentConfig

    for pid, text in CGROUPS.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    src = PodGpuSource(Pods([pod_obj(UID_A, "llm", "a")]), "node-1", proc_root=str(tmp_path))
    agent = Agent(AgentConfig(node_name="node-1", gpu_metrics="never"),
                  nvml=RecordedNVML.load(DATA / "nvml-8xh100-shared.json"), pod_gpu=src)
    agent.start()
    try:
        agent.tick()
    finally:
        agent.close()
    text = generate_latest(agent.metrics.registry).decode()
    (s,) = [s for f in text_string_to_metric_families(text) if f.name == POD_GPU_UTIL for s in f.samples]
    assert (s.labels["pod"], s.value) == ("a", 40.0)


def one_gpu(process_util):
    import json

    rec = json.loads((DATA / "nvml-8xh100-shared.json").read_text())
    dev = rec["frames"][0]["devices"][0]
    dev["nvmlDeviceGetProcessUtilization"] = process_util
    rec["frames"][0]["devices"] = [dev]
    rec["frames"][0]["nvmlDeviceGetCount"] = 1
    with GPUReader(RecordedNVML(rec)) as reader:
        (g,) = reader.read().gpus
    return g


@pytest.mark.parametrize("answer, util, error", [
    ({"nvml_error": "NOT_FOUND"}, (), False),  # no sample since the timestamp: idle
    ({"nvml_error": "SUCCESS"}, (), False),  # pynvml's way of saying zero samples
    ({"nvml_error": "NOT_SUPPORTED"}, None, False),
    ({"nvml_error": "NO_PERMISSION"}, None, True),
    ([{"pid": 1, "timeStamp": 5, "smUtil": 250, "memUtil": 0},  # a stray sample is dropped
      {"pid": 2, "timeStamp": 6, "smUtil": 10, "memUtil": 0}, {"pid": 2, "timeStamp": 7, "smUtil": 30, "memUtil": 0}],
     ((2, 20.0),), False),
])
def test_process_utilization_answers(answer, util, error):
    g = one_gpu(answer)
    assert g.process_utilization == util
    assert any(e.startswith("process_utilization") for e in g.errors) == error


def test_gpu_lost_on_the_process_samples_marks_it_lost():
    g = one_gpu({"nvml_error": "GPU_IS_LOST"})
    assert g.lost and not g.healthy and g.process_utilization is None


def test_cli_wires_the_source_with_proc_root(monkeypatch, tmp_path):
    import argparse

    from scheduler.agent import cli

    monkeypatch.setattr(cli, "_core_v1", lambda kubeconfig: Pods([]))
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["--node-name", "node-1", "--proc-root", str(tmp_path), "--metrics-port", "0"])
    agent = cli.build_agent(args)
    assert (agent.pod_gpu.proc_root, agent.pod_gpu.node_name) == (str(tmp_path), "node-1")
    no_publish = cli.build_agent(p.parse_args(["--no-publish", "--metrics-port", "0"]))
    assert no_publish.pod_gpu is None  # no API server: no pod names to give
