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
    # a 2 s request with W 2 need not run past its wait: no concurrency; arriving in the first
    # second, whose GPU time the simulator does not count, it needs no work either
    ([0], [2], 1, 5, 300, 1.0, 0),
    # at 10 s: 2 s of slot time, but the replica that starts it was held a cold start (5 s)
    # before it was loaded (step 6, one replica, nothing left to finish): 5
    ([10], [2], 1, 5, 300, 1.0, 5),
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
    # 64 one-token requests at 1 s, W 2: none must run past its wait; batch 32 without slowdown
    # decodes 32 tok/s: 64 / 32 = 2 s; slot time 64 x 1 s / 32 = 2 s (no burst window fits before them)
    b = lower_bound([load([1] * 64, [1] * 64)], svc(32), 2.0, 5.0, 100.0, 1.0)
    assert b.gpu_hours * 3600 == pytest.approx(2.0) and b.binding == "work"
    # with slowdown 0.5 the full batch decodes 32 / (1 + 0.5 x 31) = 1.94 tok/s: 64 / 1.94 = 33 s
    b = lower_bound([load([1] * 64, [1] * 64)], svc(32, slowdown=0.5), 2.0, 5.0, 100.0, 1.0)
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


def _terms(outputs) -> np.ndarray:
    """work_terms of requests with no prompt on svc(): columns prefill 0, decode o/B, slots o/B, KV ~0."""
    from benchmarks.autoscale.bound import work_terms
    return work_terms(load([0.0] * len(outputs), outputs), svc())


@pytest.mark.parametrize("outputs, batch, cold, length, want", [
    # 10 requests of 3 s, one at a time, 4 s window, C 10: J replicas start them, the 10 - J
    # others finish inside it, 3 x (10 - J) s of loaded time within J x 4 s: J >= 30/7 -> 5:
    # 5 x 10 + 3 x 5 = 65 (J = 6: 60 + 12 = 72)
    ([3] * 10, 1, 10.0, 4.0, 65.0),
    # two slots per replica: 10 - 2J finish, 1.5 s each of loaded time: 4J >= 1.5 x (10 - 2J) -> J = 3:
    # 30 + 1.5 x 4 = 36
    ([3] * 10, 2, 10.0, 4.0, 36.0),
    # a 100 s window: one replica does 9 of them: 10 + 27 = 37
    ([3] * 10, 1, 10.0, 100.0, 37.0),
    # the smallest finish first: seven of 1 s, three of 9 s, 4 s window. J = 3: the 7 that finish
    # are the 1 s ones, 7 s <= 3 x 4: 30 + 7 = 37; J = 2: 8 finish, 7 + 9 = 16 s > 2 x 4
    ([1] * 7 + [9] * 3, 1, 10.0, 4.0, 37.0),
    # no cold start: a replica per request, nothing else
    ([3] * 10, 1, 0.0, 4.0, 0.0),
])
def test_burst_cost_by_hand(outputs, batch, cold, length, want):
    from benchmarks.autoscale.bound import burst_cost, work_terms
    terms = work_terms(load([0.0] * len(outputs), outputs), svc(batch))
    assert burst_cost(terms, batch, cold, length)[0] == pytest.approx(want)


def test_burst_cost_with_fewer_requests_never_costs_more():
    from benchmarks.autoscale.bound import burst_cost
    got = burst_cost(_terms([3] * 10), 1, 10.0, 4.0, counts=range(11))
    assert got[0] == 0 and np.all(np.diff(got) >= 0) and got[-1] == pytest.approx(65)


@pytest.mark.parametrize("pct, want_s, binding", [
    # ten 2 s requests 0.1 s apart from t = 20, one at a time, W 2, C 10: none must run past
    # its wait (no concurrency term), work 20 s. The window [20, 23] (3 s) must start all ten:
    # 3J >= 2 x (10 - J) -> J = 4: 4 x 10 + 2 x 6 = 52, the cold start before it inside [10, 23]
    (1.0, 52.0, "burst"),
    # one miss allowed (90%): priced at p per miss, the same window is min(52, 50 + p) (nine
    # requests: J = 4, 40 + 10); p = 1.25 (C / 8) gives 51.25 - 1.25 = 50
    (0.9, 50.0, "burst"),
])
def test_burst_term_by_hand(pct, want_s, binding):
    b = lower_bound([load([20 + 0.1 * k for k in range(10)], [2] * 10)], svc(1), 2.0, 10.0, 40.0, pct)
    assert b.gpu_hours * 3600 == pytest.approx(want_s) and b.binding == binding
    assert b.work_h * 3600 == pytest.approx(20.0 - 2.0 * b.misses_allowed)


def test_burst_windows_need_a_cold_start_inside_the_counted_time():
    # the same burst at t = 5: a window must begin (cold start included) at 1 s or later, so no
    # window holds it and the work term is left (GPU time from 0 holds replicas loaded for free)
    b = lower_bound([load([5 + 0.1 * k for k in range(10)], [2] * 10)], svc(1), 2.0, 10.0, 40.0, 1.0)
    assert b.burst_h == 0 and b.gpu_hours * 3600 == pytest.approx(20.0)


def test_many_allowed_misses_fit_the_windows_grid():
    # 5,000 requests in one second, 50% allowed to miss: 2,500 misses, a grid of 14 points
    # (0, 1, 2, ..., 2048, 2500), wider than a small trace's
    from benchmarks.autoscale.bound import burst_windows, work_terms
    x = load([30.0] * 5000, [2] * 5000)
    w = burst_windows(x.arrival, work_terms(x, svc()), 1, 2.0, 10.0, 60.0, 2500)
    assert w.drops.shape[1] == 14 and w.drops[:, -1].max() == 2500
    b = lower_bound([x], svc(), 2.0, 10.0, 60.0, 0.5)
    assert b.misses_allowed == 2500 and b.gpu_hours > 0
