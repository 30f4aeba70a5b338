"""The agent leaves GPU feature discovery's labels and dcgm-exporter's metrics alone where
those run (issue #16): pure decisions as a table, then a tick on recorded NVML."""
from __future__ import annotations

import argparse
import pathlib

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import generate_latest

from scheduler import contract
from scheduler.agent.cli import add_arguments
from scheduler.agent.coexist import exports_gpu_metrics, writes_gpu_labels
from scheduler.agent.daemon import Agent, AgentConfig
from scheduler.agent.metrics import AgentMetrics
from scheduler.agent.nvml import RecordedNVML
from scheduler.agent.publish import NodePublisher
from tests.scheduler.agent.fakes import FakeCoreV1

DATA = pathlib.Path(__file__).parent / "data"
GFD = {"nvidia.com/gfd.timestamp": "1733450000", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-SHARED"}
GFD_NO_TIMESTAMP = {"nvidia.com/cuda.driver.major": "560", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
NFD_ONLY = {"feature.node.kubernetes.io/pci-10de.present": "true"}
OPERATOR = {"nvidia.com/gpu.deploy.dcgm-exporter": "true", **GFD}

# (mode, the Node's labels (None: not read), agent writes nvidia.com/gpu.* labels)
LABEL_ROWS = [
    ("auto", {}, True),
    ("auto", NFD_ONLY, True),             # NFD alone writes no nvidia.com/gpu.* labels
    ("auto", GFD, False),                 # GFD's -SHARED product stays as GFD wrote it
    ("auto", GFD_NO_TIMESTAMP, False),    # GFD started with --no-timestamp
    ("auto", None, False),                # not read: never overwrite GFD, even once
    ("always", GFD, True),
    ("never", {}, False),
]


@pytest.mark.parametrize("mode, labels, write", LABEL_ROWS)
def test_writes_gpu_labels(mode, labels, write):
    assert writes_gpu_labels(mode, labels)[0] is write


# (mode, the Node's labels, agent exports DCGM_FI_*)
METRIC_ROWS = [
    ("auto", {}, True),
    ("auto", GFD, True),                  # GFD alone exports no metrics
    ("auto", OPERATOR, False),            # the GPU Operator runs dcgm-exporter here
    ("auto", {"nvidia.com/gpu.deploy.dcgm-exporter": "false"}, True),
    ("auto", None, True),                 # not read: a short overlap beats a gap
    ("always", OPERATOR, True),
    ("never", {}, False),
]


@pytest.mark.parametrize("mode, labels, export", METRIC_ROWS)
def test_exports_gpu_metrics(mode, labels, export):
    assert exports_gpu_metrics(mode, labels)[0] is export


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="auto, always, never"):
        writes_gpu_labels("yes", {})


def make_agent(tmp_path, node_labels, **cfg):
    clock = [1000.0]
    api = FakeCoreV1(labels=dict(node_labels))
    config = AgentConfig(node_name="gpu-7", cache_dirs=(str(tmp_path),), measure_residency=False, **cfg)
    agent = Agent(config, nvml=RecordedNVML.load(DATA / "nvml-8xh100-10gib.json"),
                  publisher=NodePublisher(api, "gpu-7", clock=lambda: clock[0]), metrics=AgentMetrics("gpu-7"),
                  clock=lambda: clock[0])
    agent.start()
    return agent, api, clock


def dcgm_series(agent) -> int:
    return generate_latest(agent.metrics.registry).decode().count("DCGM_FI_DEV_FB_USED{")


def test_where_the_gpu_operator_runs_the_agent_writes_no_labels_and_no_dcgm_series(tmp_path):
    agent, api, _ = make_agent(tmp_path, OPERATOR)
    res = agent.tick()
    assert res.published and "labels" not in api.patches[-1][1]["metadata"]
    assert res.labels == {}
    assert api.labels[contract.GPU_PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3-SHARED"  # GFD's, untouched
    assert dcgm_series(agent) == 0
    text = generate_latest(agent.metrics.registry).decode()
    assert "gpusched_gpu_healthy{" in text  # the agent's own series stay
    agent.close()


def test_without_gfd_or_dcgm_exporter_the_agent_does_both(tmp_path):
    agent, api, _ = make_agent(tmp_path, NFD_ONLY)
    agent.tick()
    assert api.patches[-1][1]["metadata"]["labels"][contract.GPU_COUNT_LABEL] == "8"
    assert dcgm_series(agent) == 8
    agent.close()


def test_gfd_arriving_later_is_noticed_on_the_next_label_read(tmp_path):
    agent, api, clock = make_agent(tmp_path, {}, node_labels_s=300)
    agent.tick()
    assert "labels" in api.patches[-1][1]["metadata"]
    api.labels.update(GFD)  # GFD is installed
    clock[0] += 299
    agent.tick()
    clock[0] += 2  # 301 s after the first read: read again; heartbeat not due, so force a write
    res = agent.tick(force_publish=True)
    assert res.published and "labels" not in api.patches[-1][1]["metadata"]
    agent.close()


def test_node_read_failure_writes_no_labels_but_keeps_metrics(tmp_path):
    agent, api, _ = make_agent(tmp_path, {})
    real = api.list_node

    def failing(**kw):
        raise ApiException(status=500, reason="boom")
    api.list_node = failing
    res = agent.tick()
    assert res.published and "labels" not in api.patches[-1][1]["metadata"]
    assert dcgm_series(agent) == 8
    assert agent.metrics.registry.get_sample_value("gpusched_agent_errors_total", {"kind": "node_read"}) == 1
    api.list_node = real
    agent.close()


@pytest.mark.parametrize("argv, labels, metrics", [
    ([], "auto", "auto"),
    (["--no-gpu-metrics"], "auto", "never"),
    (["--gpu-metrics=always", "--gpu-labels=never"], "never", "always"),
])
def test_flags(argv, labels, metrics):
    from scheduler.agent.cli import build_agent
    p = argparse.ArgumentParser()
    add_arguments(p)
    agent = build_agent(p.parse_args(["--no-publish", *argv]))
    assert (agent.config.gpu_labels, agent.config.gpu_metrics) == (labels, metrics)
