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
