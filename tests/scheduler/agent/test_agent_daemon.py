"""The agent's tick end to end on recorded NVML, temporary cache dirs and a fake CoreV1Api."""
from __future__ import annotations

import json
import logging
import pathlib

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import generate_latest

from scheduler import contract, nodeinfo
from scheduler.agent import daemon as daemon_mod
from scheduler.agent.daemon import Agent, AgentConfig
from scheduler.agent.metrics import AgentMetrics
from scheduler.agent.nvml import NVMLUnavailable, RecordedNVML
from scheduler.agent.prefetch import Prefetcher
from scheduler.agent.publish import NodePublisher

from tests.scheduler.agent.fakes import FILES, MODEL, SIZE, FakeCoreV1, make_store

DATA = pathlib.Path(__file__).parent / "data"
MiB, GiB = 2**20, 2**30


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def recording(name: str) -> RecordedNVML:
    return RecordedNVML.load(DATA / name)


def make_agent(tmp_path, nvml=None, api=None, **cfg):
    clock = Clock()
    api = api if api is not None else FakeCoreV1()
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(exist_ok=True)
    config = AgentConfig(node_name="gpu-7", cache_dirs=(str(cache_dir),), **cfg)
    pub = NodePublisher(api, "gpu-7", clock=clock)
    metrics = AgentMetrics("gpu-7")
    agent = Agent(config, nvml=nvml, publisher=pub, metrics=metrics, clock=clock)
    return agent, api, clock, cache_dir


def errors(agent: Agent, kind: str) -> float:
    return agent.metrics.registry.get_sample_value("gpusched_agent_errors_total", {"kind": kind})


def annotations(api: FakeCoreV1, i: int = -1) -> dict:
    return api.patches[i][1]["metadata"]["annotations"]


def test_h100_tick_publishes_what_nvidia_smi_shows(tmp_path):
    agent, api, clock, cache_dir = make_agent(tmp_path, recording("nvml-8xh100-10gib.json"))
    (cache_dir / "org" / "m").mkdir(parents=True)
    (cache_dir / "org" / "m" / "model.safetensors").write_bytes(b"w" * 1000)
    agent.start()
    res = agent.tick()
    assert res.published and res.reason == "first report"
    ann = annotations(api)
    rep = nodeinfo.report_from_annotations(ann)
    assert rep.errors == ()
    g0 = rep.gpus[0]
    # what the extender reads: usable = 81,559 - 480 reserved; used = nvidia-smi's 10,767
    assert (g0.memory_total // MiB, g0.memory_used // MiB) == (81079, 10767)
    assert g0.product == "NVIDIA-H100-80GB-HBM3" and g0.healthy
    assert [m.model for m in rep.models] == ["org/m"]
    assert api.patches[-1][1]["metadata"]["labels"] == {
        contract.GPU_PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3", contract.GPU_MEMORY_LABEL: "81559",
        contract.GPU_COUNT_LABEL: "8"}
    # nothing changed 10 s later: no write
    clock.t += 10
    assert not agent.tick().published and len(api.patches) == 1
    # heartbeat
    clock.t += 120
    res = agent.tick()
    assert res.published and res.reason.startswith("heartbeat") and len(api.patches) == 2
    text = generate_latest(agent.metrics.registry).decode()
    assert ('DCGM_FI_DEV_FB_USED{Hostname="gpu-7",UUID="GPU-5a1c00e2-7d3b-4c1f-9e0a-3f6b2c81d400",device="nvidia0",'
            'gpu="0",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:18:00.0"} 10767.0') in text
    assert 'DCGM_FI_DEV_FB_FREE{' in text and "70312.0" in text
    assert 'gpusched_model_cache_bytes{model="org/m",tier=' in text
    agent.close()


def test_gpu_lost_mid_run_is_reported_and_nothing_crashes(tmp_path, caplog):
    agent, api, clock, _ = make_agent(tmp_path, recording("nvml-8xh100-gpu-lost.json"))
    agent.start()
    assert agent.tick().published
    uuid3 = nodeinfo.report_from_annotations(annotations(api)).gpus[3].uuid
    clock.t += 30
    with caplog.at_level(logging.WARNING):
        res = agent.tick()  # GPU 3 raises GPU_IS_LOST, XID 79
    assert res.published and "GPU 3 unhealthy" in res.reason
    g3 = nodeinfo.report_from_annotations(annotations(api)).gpus[3]
    assert not g3.healthy and g3.uuid == uuid3
    assert g3.memory_used == g3.memory_total == 81079 * MiB  # unknown is not free: shown as all used
    assert errors(agent, "gpu_lost") == 1
    (ev,) = [b for _, b in api.events if b["reason"] == "GPULost"]
    assert "GPU 3" in ev["message"] and "XID 79" in ev["message"] and ev["type"] == "Warning"
    assert any("GPU 3" in r.message and "unhealthy" in r.message for r in caplog.records)
    assert agent.metrics.registry.get_sample_value("gpusched_gpu_healthy",
                                                   {"gpu": "3", "UUID": uuid3, "Hostname": "gpu-7"}) == 0
    clock.t += 30
    res = agent.tick()  # now the handle is lost too: still reported, from what was known
    g3 = res.report.gpus[3]
    assert not g3.healthy and g3.uuid == uuid3 and g3.memory_total == 81079 * MiB
    assert len([b for _, b in api.events if b["reason"] == "GPULost"]) == 1  # no repeat
    assert errors(agent, "gpu_lost") == 1
    assert len(res.report.gpus) == 8


def test_no_gpu_mode_still_publishes_the_cache(tmp_path, caplog):
    rec = json.loads((DATA / "nvml-8xh100-10gib.json").read_text())
    rec["nvmlInit"] = {"nvml_error": "LIBRARY_NOT_FOUND"}
    agent, api, clock, cache_dir = make_agent(tmp_path, RecordedNVML(rec))
    (cache_dir / "gpt2").mkdir()
    (cache_dir / "gpt2" / "model.safetensors").write_bytes(b"x" * 10)
    with caplog.at_level(logging.WARNING):
        agent.start()
    lines = [r.message for r in caplog.records if "no GPU" in r.message]
    assert len(lines) == 1 and "no-GPU mode" in lines[0]
    res = agent.tick()
    assert res.published and res.report.gpus == ()
    assert json.loads(annotations(api)[contract.MODEL_CACHE]) == {"gpt2": {"bytes": 10, "tier": res.scan.models[0].tier}}
    assert "labels" not in api.patches[-1][1]["metadata"]  # never touches GPU labels without GPUs


def test_no_gpu_mode_retries_nvml(tmp_path):
    rec = json.loads((DATA / "nvml-8xh100-10gib.json").read_text())
    rec["nvmlInit"] = {"nvml_error": "DRIVER_NOT_LOADED"}
    nv = RecordedNVML(rec)
    agent, api, clock, _ = make_agent(tmp_path, nv, nvml_retry_s=300)
    agent.start()
    assert agent.tick().report.gpus == ()
    nv.recording["nvmlInit"] = None  # the GPU operator installed the driver
    clock.t += 100
    assert agent.tick().report.gpus == ()
    clock.t += 201
    assert len(agent.tick().report.gpus) == 8


def test_require_gpus(tmp_path):
    rec = json.loads((DATA / "nvml-8xh100-10gib.json").read_text())
    rec["nvmlInit"] = {"nvml_error": "LIBRARY_NOT_FOUND"}
    agent, *_ = make_agent(tmp_path, RecordedNVML(rec), require_gpus=True)
    with pytest.raises(NVMLUnavailable):
        agent.start()


def test_api_errors_back_off_and_retry(tmp_path):
    api = FakeCoreV1()
    api.fail = ApiException(status=503, reason="Service Unavailable")
    agent, api, clock, _ = make_agent(tmp_path, recording("nvml-8xh100-10gib.json"), api=api, interval_s=10)
    agent.start()
    res = agent.tick()
    assert not res.published and "503" in res.reason
    assert errors(agent, "publish") == 1
    clock.t += 5
    assert "retrying in 5s" in agent.tick().reason  # backoff 10 s, then 20, 40 ... up to the heartbeat
    clock.t += 5
    assert not agent.tick().published and errors(agent, "publish") == 2
    api.fail = None
    clock.t += 20
    assert agent.tick().published
    assert agent.metrics.registry.get_sample_value("gpusched_agent_node_writes_total", {"result": "error"}) == 2


def test_cache_problems_become_one_event_and_a_metric(tmp_path):
    agent, api, clock, cache_dir = make_agent(tmp_path)
    bad = cache_dir / "org" / "bad"
    bad.mkdir(parents=True)
    (bad / "model.safetensors").write_bytes(b"")
    (bad / "loop.bin").symlink_to("loop.bin")
    (cache_dir / "org" / "x;y").mkdir()
    (cache_dir / "org" / "x;y" / "config.json").write_text("{}")
    agent.start()
    agent.tick()
    (ev,) = [b for _, b in api.events if b["reason"] == "ModelCacheProblem"]
    assert "0 bytes" in ev["message"] and "symlink loop" in ev["message"] and "unsafe model id" in ev["message"]
    assert errors(agent, "cache") == 3
    clock.t += 10
    agent.tick()
    assert len([b for _, b in api.events if b["reason"] == "ModelCacheProblem"]) == 1
    assert errors(agent, "cache") == 3


def test_a_bug_in_one_step_does_not_stop_the_tick(tmp_path, monkeypatch):
    agent, api, clock, _ = make_agent(tmp_path, recording("nvml-8xh100-10gib.json"))
    agent.start()

    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(daemon_mod.cache_mod, "scan_cache", boom)
    res = agent.tick()
    assert res.published and len(res.report.gpus) == 8
    assert errors(agent, "cache") == 1


def test_prefetch_through_the_node_annotation(tmp_path):
    store = tmp_path / "store"
    make_store(store)
    api = FakeCoreV1({contract.PREFETCH: json.dumps([{"model": MODEL}, {"model": "../../etc/passwd"}])})
    agent, api, clock, cache_dir = make_agent(tmp_path, api=api)
    agent.prefetcher = Prefetcher(str(cache_dir), [str(store)])
    agent.start()
    res = agent.tick()
    assert res.report.models == ()
    assert [b["reason"] for _, b in api.events] == ["PrefetchRejected", "PrefetchStarted"]
    assert agent.wait_prefetches(30)
    clock.t += 30
    res = agent.tick()
    assert res.published and "models +org/tiny" in res.reason
    assert json.loads(annotations(api)[contract.MODEL_CACHE])[MODEL]["bytes"] == SIZE
    assert "Prefetched" in [b["reason"] for _, b in api.events]
    assert agent.metrics.registry.get_sample_value("gpusched_prefetch_bytes", {"model": MODEL}) == SIZE
    clock.t += 30
    agent.tick()  # cached now: not fetched again
    assert [b["reason"] for _, b in api.events].count("PrefetchStarted") == 1
    agent.close()


def test_failed_prefetch_backs_off(tmp_path):
    store = tmp_path / "store"
    d = make_store(store)
    (d / "model.safetensors").write_bytes(b"tampered")
    api = FakeCoreV1({contract.PREFETCH: json.dumps([MODEL])})
    agent, api, clock, cache_dir = make_agent(tmp_path, api=api, prefetch_retry_s=60)
    agent.prefetcher = Prefetcher(str(cache_dir), [str(store)])
    agent.start()
    agent.tick()
    assert agent.wait_prefetches(30)
    clock.t += 10
    res = agent.tick()
    assert res.report.models == ()
    (ev,) = [b for _, b in api.events if b["reason"] == "PrefetchFailed"]
    assert "expected" in ev["message"] and "retry in 60s" in ev["message"]
    assert errors(agent, "prefetch") == 1
    clock.t += 30
    agent.tick()
    assert [b["reason"] for _, b in api.events].count("PrefetchStarted") == 1  # still backing off
    (d / "model.safetensors").write_bytes(FILES["model.safetensors"])
    clock.t += 31
    agent.tick()
    assert agent.wait_prefetches(30)
    clock.t += 30
    assert MODEL in {m.model for m in agent.tick().report.models}
    agent.close()
