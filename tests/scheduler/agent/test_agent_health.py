"""/healthz of the agent: 503 once the tick loop stops finishing ticks, so the DaemonSet's
liveness probe restarts a stuck agent (/metrics alone answers 200 regardless)."""
from __future__ import annotations

import argparse
import urllib.error
import urllib.request

import pytest

from scheduler.agent.cli import add_arguments, build_agent
from scheduler.agent.daemon import Agent, AgentConfig
from scheduler.agent.health import liveness
from scheduler.agent.metrics import AgentMetrics
from scheduler.cli import UserError

# (started_at, last_tick_at, now, stale_after_s) -> alive; age = now - (last_tick_at or started_at)
LIVENESS = [
    ("starting, 10 s in", 100.0, None, 110.0, 300.0, True),      # age 10 <= 300
    ("start never ticked", 100.0, None, 401.0, 300.0, False),     # age 301 > 300
    ("ticked 5 s ago", 0.0, 995.0, 1000.0, 300.0, True),          # age 5
    ("exactly at the limit", 0.0, 700.0, 1000.0, 300.0, True),    # age 300, not over
    ("one second over", 0.0, 699.0, 1000.0, 300.0, False),       # age 301
    ("tight limit", 0.0, 960.0, 1000.0, 30.0, False),             # age 40 > 30
]


@pytest.mark.parametrize("started, last, now, limit, alive", [r[1:] for r in LIVENESS], ids=[r[0] for r in LIVENESS])
def test_liveness(started, last, now, limit, alive):
    ok, why = liveness(started, last, now, limit)
    assert ok is alive
    assert ("stuck" in why) is not alive


def test_agent_is_unhealthy_when_ticks_stop(tmp_path):
    clock = [0.0]
    agent = Agent(AgentConfig(cache_dirs=(str(tmp_path),), stale_after_s=60, measure_residency=False),
                  metrics=AgentMetrics("n"), clock=lambda: clock[0])
    clock[0] = 50
    assert agent.healthy()[0]  # starting: 50 s <= 60
    agent.tick()
    clock[0] = 100
    assert agent.healthy()[0]  # ticked at 50
    clock[0] = 111
    ok, why = agent.healthy()
    assert not ok and "61s ago" in why


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_and_metrics_share_the_port():
    state = [(True, "ok (last tick 1.0s ago)")]
    metrics = AgentMetrics("node-1")
    server = metrics.serve(0, "127.0.0.1", health=lambda: state[0])
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert get(base + "/healthz") == (200, "ok (last tick 1.0s ago)\n")
        state[0] = (False, "last tick 400s ago (limit 300s): the agent's loop is stuck")
        code, body = get(base + "/healthz")
        assert code == 503 and "stuck" in body
        code, body = get(base + "/metrics")  # metrics still answer: that is why they make a poor probe
        assert code == 200 and "gpusched_agent_errors_total" in body
        assert get(base + "/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_stale_after_must_exceed_the_interval():
    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(UserError, match="--stale-after"):
        build_agent(p.parse_args(["--no-publish", "--interval", "60", "--stale-after", "60"]))
