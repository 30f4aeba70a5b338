"""The lower bound on small hand-computed traces: must-run intervals, layers, gaps
bridged or paid a cold start, the batch and the KV cache, the allowed misses, the work
term, the trace's end. Service: decode 1 token/s at batch 1 and no prefill, so a
request's output tokens are its seconds alone on a replica."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.autoscale.bound import Load, layer_cost, lower_bound, required_replicas
from benchmarks.fleet.model import ServiceModel


def svc(batch: int = 1, kv: int = 10**9, slowdown: float = 0.0) -> ServiceModel:
    return ServiceModel(prefill_tps=1e12, decode_tps=1.0, decode_slowdown=slowdown, max_batch=batch,
                        kv_capacity_tokens=kv)


def load(arrivals, outputs, prompts=None) -> Load:
    a = np.array(arrivals, dtype=float)
    p = np.zeros(len(a)) if prompts is None else np.array(prompts, dtype=float)
    return Load(a, p, np.array(outputs, dtype=float))


@pytest.mark.parametrize("arrivals, outputs, batch, cold, until, pct, want_s", [
    # one 10 s request, W 2: must run over [2, 10): 8 s, plus min(2, C=5) before it (held from 0) = 10
    ([0], [10], 1, 5, 300, 1.0, 10),
    # two apart: [102, 110) and [202, 210): 8 + 8, min(102, 30) before, gap 92 > C: 30 -> 76
    ([100, 200], [10, 10], 1, 30, 300, 1.0, 76),
    # a gap of 12 < C is bridged: 8 + 8 + 30 + 12 = 58
    ([100, 120], [10, 10], 1, 30, 300, 1.0, 58),
    # overlap, one at a time: r = 1 on [102, 107), 2 on [107, 120), 1 on [120, 125)
    # layer 1: 23 + 30, layer 2: 13 + 30 -> 96
    ([100, 105], [20, 20], 1, 30, 300, 1.0, 96),
    # the same with batch 2: one layer, 23 + 30 = 53
    ([100, 105], [20, 20], 2, 30, 300, 1.0, 53),
    # a 2 s request with W 2 need not run past its wait: no concurrency; work: 2 s of slot time
    ([0], [2], 1, 5, 300, 1.0, 2),
    # 99th percentile over two requests allows no miss (floor(0.02) = 0); 50% allows one:
    # 76 - max(|I| + C) = 76 - (8 + 30) = 38 (work: 20 - 10 = 10)
    ([100, 200], [10, 10], 1, 30, 300, 0.99, 76),
    ([100, 200], [10, 10], 1, 30, 300, 0.5, 38),
    # GPU time counts to ``until``: [2, 100) clipped to [2, 50): 48 + 2; the work term leaves out
    # a request that need not finish by 50 (admitted at 2, done at 102 at the slowest)
    ([0], [100], 1, 5, 50, 1.0, 50),
])
def test_bound_by_hand(arrivals, outputs, batch, cold, until, pct, want_s):
    b = lower_bound([load(arrivals, outputs)], svc(batch), 2.0, cold, until, pct)
    assert b.gpu_hours * 3600 == pytest.approx(want_s)


def test_kv_cache_counts_a_replica_per_cache_full():
    # two 10 s requests overlapping on [2, 10), each 60% of the cache, batch 32: they cannot share
    x = load([0, 0], [10, 10], prompts=[0, 0])
    _, r = required_replicas(x.arrival + 2, x.arrival + 10, np.array([600.0, 600.0]), svc(32, kv=1000))
    assert list(r[:-1]) == [2] and r[-1] == 0
    # a request larger than the cache runs alone and counts one replica, not two
    _, r = required_replicas(np.array([2.0]), np.array([10.0]), np.array([5000.0]), svc(32, kv=1000))
    assert list(r[:-1]) == [1]


def test_work_term_uses_the_full_batch_throughput():
    # 64 one-token requests at 0, W 2: none must run past its wait; batch 32 without slowdown decodes
    # 32 tok/s: 64 / 32 = 2 s; slot time 64 x 1 s / 32 = 2 s
    b = lower_bound([load([0] * 64, [1] * 64)], svc(32), 2.0, 5.0, 100.0, 1.0)
    assert b.gpu_hours * 3600 == pytest.approx(2.0) and b.binding == "work"
    # with slowdown 0.5 the full batch decodes 32 / (1 + 0.5 x 31) = 1.94 tok/s: 64 / 1.94 = 33 s
    b = lower_bound([load([0] * 64, [1] * 64)], svc(32, slowdown=0.5), 2.0, 5.0, 100.0, 1.0)
    assert b.gpu_hours * 3600 == pytest.approx(64 / (32 / 16.5))


def test_models_add_and_share_the_miss_allowance():
    one = lower_bound([load([100, 200], [10, 10])], svc(), 2.0, 30.0, 300.0, 1.0)
    two = lower_bound([load([100, 200], [10, 10]), load([100], [10])], svc(), 2.0, 30.0, 300.0, 1.0)
    assert two.gpu_hours * 3600 == pytest.approx(76 + 38)  # the second model: 8 + min(102, 30)
    # 3 requests at 50%: one miss over the trace, the dearest of all (8 + 30) taken off
    half = lower_bound([load([100, 200], [10, 10]), load([100], [10])], svc(), 2.0, 30.0, 300.0, 0.5)
    assert half.misses_allowed == 1 and half.gpu_hours * 3600 == pytest.approx(76 + 38 - 38)
    assert one.peak_required == 1


@pytest.mark.parametrize("r, t, cold, until, want", [
    # r = 2 on [0, 10): held from 0 for free, 2 x 10
    ([2, 0], [0, 10], 5, 100, 20),
    # r = 1 on [50, 60) and [62, 70): first min(50, 5), gap 2 bridged, 18 covered
    ([1, 0, 1, 0], [50, 60, 62, 70], 5, 100, 25),
    # nothing required
    ([0], [0], 5, 100, 0),
])
def test_layer_cost(r, t, cold, until, want):
    assert layer_cost(np.array(t, dtype=float), np.array(r), cold, until) == pytest.approx(want)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="percentile"):
        lower_bound([load([0], [1])], svc(), 2.0, 5.0, 10.0, 0.0)


def _brute_force(r: list[int], cold: int) -> int:
    """The cheapest schedule on a 1 s grid keeping r(t) loaded, by exhaustive search over
    what to do each second: any number of replicas loaded at 0 for free (the service ran
    before); later, release any loaded replica or start new ones, which hold a GPU for
    ``cold`` seconds of loading first; every held second costs 1."""
    from functools import cache

    top = 2 * max(r) + 1

    @cache
    def best(t: int, loaded: int, loading: tuple[int, ...]) -> float:
        if t == len(r):
            return 0
        out = float("inf")
        for keep in range(loaded + 1):
            if keep < r[t]:
                continue
            for new in range(top - keep - len(loading) + 1):
                held = keep + len(loading) + new
                left = tuple(sorted(x - 1 for x in loading + (cold,) * new))
                ready = sum(1 for x in left if x == 0)
                out = min(out, held + best(t + 1, keep + ready, tuple(x for x in left if x > 0)))
        return out

    return min(best(0, n, ()) for n in range(top + 1))


@pytest.mark.parametrize("seed", range(12))
def test_layer_cost_is_the_optimum_of_an_exhaustive_search(seed):
    # step 3's claim, checked on random small profiles: the layer formula is what the best
    # schedule costs, so it is no more than what any policy pays for the same r(t)
    rng = np.random.default_rng(seed)
    r = [int(v) for v in rng.choice([0, 0, 1, 1, 2], size=9)]
    cold = int(rng.integers(1, 4))
    t = np.arange(len(r), dtype=float)
    assert layer_cost(t, np.array(r), float(cold), float(len(r))) == pytest.approx(_brute_force(r, cold))
