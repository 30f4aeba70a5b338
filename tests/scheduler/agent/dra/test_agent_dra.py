"""The agent drives its DRA driver: started with it, told the GPUs of every tick, stopped with it."""
from __future__ import annotations

import pytest

from scheduler.agent.daemon import Agent, AgentConfig
from scheduler.agent.nvml import RecordedNVML
from tests.scheduler.agent.dra.gpus import DATA


class Recorder:
    def __init__(self):
        self.calls: list = []

    def start(self):
        self.calls.append("start")

    def stop(self):
        self.calls.append("stop")

    def update(self, gpus):
        self.calls.append(tuple(g.uuid for g in gpus))
        return True


def test_every_tick_hands_the_dra_driver_the_gpus_it_read(tmp_path):
    dra = Recorder()
    agent = Agent(AgentConfig(node_name="n", cache_dirs=(str(tmp_path),), measure_residency=False),
                  nvml=RecordedNVML.load(str(DATA / "nvml-8xh100-10gib.json")), dra=dra)
    agent.start()
    agent.tick()
    agent.tick()
    agent.close()
    assert dra.calls[0] == "start" and dra.calls[-1] == "stop"
    ticks = dra.calls[1:-1]
    assert len(ticks) == 2 and ticks[0] == ticks[1] and len(ticks[0]) == 8
    assert ticks[0][0] == "GPU-5a1c00e2-7d3b-4c1f-9e0a-3f6b2c81d400"


@pytest.mark.parametrize("flags", [["--no-publish"], ["--once"]])
def test_dra_without_the_api_or_a_running_agent_is_a_usage_error(flags, capsys):
    from scheduler.cli import main
    assert main(["agent", "--dra", "--node-name", "n", *flags]) != 0
    assert "--dra needs the API server and a long-running agent" in capsys.readouterr().err


@pytest.mark.parametrize("flags, words", [
    (["--once"], "--dra needs the API server and a long-running agent"),
    (["--no-publish"], "--dra needs the API server and a long-running agent"),
    (["--cache-dir", "/c"], "--dra-only runs the DRA driver alone: not with --cache-dir"),
    (["--model-store", "hf", "--cache-quota", "1Gi"], "not with --model-store, --cache-quota"),
])
def test_dra_only_refuses_what_the_agent_beside_it_does(flags, words, capsys):
    from scheduler.cli import main
    assert main(["agent", "--dra-only", "--node-name", "n", *flags]) != 0
    assert words in capsys.readouterr().err


def test_dra_only_is_the_driver_alone(tmp_path, monkeypatch):
    """The chart's gpusched-dra-plugin container: the DRA driver and /healthz; no Node writes, no
    Events, no cache, no pod reads, no DCGM series (the agent beside it does all of that)."""
    import argparse

    from scheduler.agent.cli import add_arguments, build_agent
    from scheduler.agent.dra.node import DraNode

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                          "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
                          "current-context: c\n")
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--dra-only", "--node-name", "gpu-7", "--kubeconfig", str(kubeconfig),
                         "--dra-plugin-dir", str(tmp_path / "plugin"), "--dra-registry-dir", str(tmp_path / "reg"),
                         "--cdi-dir", str(tmp_path / "cdi"), "--nvml-recording", str(DATA / "nvml-8xh100-10gib.json")])
    agent = build_agent(args)
    assert isinstance(agent.dra, DraNode) and agent.dra.node == "gpu-7"
    assert agent.publisher is None and agent.pod_gpu is None and agent.prefetcher is None
    assert agent.config.cache_dirs == () and agent.config.gpu_metrics == "never"
    published = []
    monkeypatch.setattr(agent.dra.slices, "publish", lambda gpus: published.append(len(gpus)) or True)
    agent.start()
    try:
        agent.tick()
        assert (tmp_path / "plugin" / "dra.sock").is_socket()
        assert (tmp_path / "reg" / "gpu.gpusched.io-reg.sock").is_socket()
    finally:
        agent.close()
    assert published == [8]
