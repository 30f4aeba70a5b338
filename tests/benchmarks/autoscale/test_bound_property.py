"""The lower bound never exceeds what a simulated policy that meets the SLO spends.

On small random traces (bursts after idle spells, the regime where the burst term binds)
every policy the bench runs that meets the queue-wait SLO (static counts, the oracle at
several utilisations, ours with the bench's spec) is simulated, and the bound, computed
with the same service model, the smallest cold start and the same end of GPU time, must
be at or below each one's GPU-hours. A step of the bound that credits a policy with
something the simulator does not allow shows up here as a failure."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.autoscale import policies as pol
from benchmarks.autoscale.bound import Load, lower_bound
from benchmarks.autoscale.service import TIERS, ColdStart, calibrate_service_rate, tokens_of
from benchmarks.autoscale.sim import SimConfig, WorkloadInput, simulate
from benchmarks.fleet.model import ServiceModel, TraceRow

WAIT = 2.0


def _trace(rng: np.random.Generator, length: float) -> list[TraceRow]:
    """Poisson arrivals whose rate jumps between idle spells and bursts every 20-60 s."""
    rows, t = [], 0.0
    while t < length:
        span = float(rng.uniform(20, 60))
        rate = float(rng.choice([0.05, 0.5, 3.0, 8.0]))
        end = min(length, t + span)
        while True:
            t += float(rng.exponential(1 / rate))
            if t >= end:
                break
            rows.append(TraceRow(t, int(rng.integers(50, 1500)), int(rng.integers(1, 60))))
        t = end
    t0 = rows[0].t
    return [TraceRow(r.t - t0, r.prompt_tokens, r.output_tokens) for r in rows]


def _gpu_h(res) -> float:
    return sum(sum(w.gpu_s.values()) for w in res.workloads) / 3600.0


def _within(res) -> float:
    qw = np.concatenate([w.queue_wait for w in res.workloads])
    return float(np.mean(qw <= WAIT))


@pytest.mark.parametrize("seed, batch, pct", [(0, 1, 0.99), (1, 1, 0.9), (2, 4, 0.99), (3, 2, 0.95),
                                               (4, 1, 0.99), (5, 8, 0.9)])
def test_bound_is_below_every_policy_that_meets_the_slo(seed, batch, pct):
    rng = np.random.default_rng(seed)
    svc = ServiceModel(prefill_tps=2000.0, decode_tps=30.0, decode_slowdown=0.05, max_batch=batch,
                       kv_capacity_tokens=20_000)
    rows = _trace(rng, 300.0)
    cfg = SimConfig(drain_after_s=300.0)
    mu = calibrate_service_rate(rows, svc, n=200)
    inp = WorkloadInput("m", rows, svc, mu)
    end = rows[-1].t
    least_cold = min(ColdStart().seconds(t) for t in TIERS)
    toks = np.array([tokens_of(r, svc) for r in rows], dtype=float)
    arrivals = np.array([r.t for r in rows])
    bound = lower_bound([Load(arrivals, toks[:, 0], toks[:, 1])], svc, WAIT, least_cold, end, pct)

    runs = {}
    for n in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48):
        runs[f"static {n}"] = simulate([inp], lambda _i, n=n: pol.Static("static", n), cfg)
    for u in (0.3, 0.5, 0.8, 1.2, 2.0):
        need = pol.oracle_need(arrivals, mu, u, end)
        runs[f"oracle u={u}"] = simulate([inp], lambda _i, need=need: pol.Oracle("oracle", need, 64), cfg)
    spec = pol.ours_spec("m", max_replicas=64, mu=mu, cold_start_s=ColdStart().seconds("remote"), queue_wait_s=WAIT,
                         queue_target=5.0)
    runs["ours"] = simulate([inp], lambda _i: pol.Ours("ours", spec, True, 2), cfg)

    met = {k: _gpu_h(r) for k, r in runs.items() if _within(r) >= pct}
    assert met, f"no policy met the SLO on seed {seed}: the test would check nothing"
    cheapest = min(met, key=lambda k: met[k])
    assert bound.gpu_hours <= met[cheapest] + 1e-9, (
        f"bound {bound.gpu_hours:.4f} h ({bound.binding}) above {cheapest}'s {met[cheapest]:.4f} h")
