"""``lower_bound``: the fewest GPU-hours any policy could spend on a known trace and
still meet the queue-wait SLO, with the simulator's service model and cold starts.
Pure arithmetic over the trace: no simulation, no policy.

The argument, for one model (models of a trace share nothing a replica could use, so
their bounds add):

1. **Who must be running when.** Request i arrives at a_i; to be within the SLO it is
   admitted at some x_i in [a_i, a_i + W] (W = the queue-wait SLO) and then runs at
   least s_i = prompt_i / prefill_tps + output_i / decode_tps, its time alone on a
   replica (prefill never runs faster than prefill_tps, decode never faster than at
   batch 1). So it certainly occupies a replica over I_i = [a_i + W, a_i + s_i)
   (empty when s_i <= W). Let n(t) = the requests whose I_i holds t.
2. **Replicas that must be loaded at t.** A replica runs at most ``max_batch``
   requests, and their KV tokens fit its cache unless one runs alone, so (counting a
   request's tokens at most once the cache) r(t) = max(ceil(n(t) / max_batch),
   ceil(sum of min(tokens_i, kv) / kv)) replicas hold a GPU and have finished loading.
3. **Cheapest way to have r(t) loaded.** A replica holds its GPU while it loads (at
   least C seconds, the smallest cold start there is) and from then until it is given
   back; replicas loaded at t = 0 are free (every policy starts with the service
   running). Split r into layers R_k = {t : r(t) >= k}. Between two consecutive
   stretches of R_k (a gap of g seconds) at least k GPUs are held either all through
   the gap or over the C seconds before the next stretch (a replica that was not held
   somewhere in the last C seconds cannot be loaded yet), so layer k costs its length
   plus min(g, C) per gap, plus min(start, C) before its first stretch. The schedule
   "one replica per layer stretch, kept through gaps shorter than C, loaded C ahead
   otherwise" reaches that sum, so it is the optimum for r, not just a bound.
4. **The SLO is a percentile.** A policy may miss m = floor((1 - p) x N) requests.
   Taking one request out of r lowers the optimum by at most |I_i| + C (add back one
   replica loaded C before I_i and held over it), so the bound subtracts the m largest
   |I_i| + C.
5. **Work.** A loaded replica prefills at most prefill_tps tokens/s, decodes at most
   max_batch x decode_rate(max_batch) tokens/s (the replica's throughput grows with the
   batch), offers max_batch slots, each held by request i for at least s_i, and a KV
   cache of kv tokens, min(tokens_i, kv) of them reserved by request i from admission
   to its end (benchmarks.fleet.model reserves prompt + output up front). So the loaded
   GPU-seconds are at least each of sum(prompt)/prefill_tps,
   sum(output)/(max_batch x decode_rate(max_batch)), sum(s_i)/max_batch and
   sum(min(tokens_i, kv) x s_i)/kv (``work_terms``), over the requests that must finish
   before the trace's end (GPU time is counted to the last arrival) and arrive after
   the simulator's first second (whose GPU time it does not count), less the m largest
   terms.
6. **Bursts: slots turn over only as requests finish** (``burst_cost``). Take a window
   [t0, t1]; the N requests arriving in [t0, t1 - W] must all start in it. Say J
   replicas start them. At t1 each runs at most max_batch requests, so at least
   N - max_batch x J of them finished inside the window, each doing all its work there
   on a replica that was loaded: the J replicas' loaded time in the window, at most
   J x (t1 - t0), is at least P(N - max_batch x J), P(n) the largest over step 5's
   columns of the sum of the n smallest terms (the cheapest n to finish). Each of the J
   replicas is also held over the cold start before the first moment it is loaded in
   the window (loading then, or loaded since before t0, when it was held since its own
   load at least C earlier, or since 0), a stretch apart from its loaded time in the
   window. So the GPU-seconds within (t0 - C, t1] are at least
   min over feasible J of J x C + P(N - max_batch x J). Windows whose (t0 - C, t1] are
   disjoint add up (``disjoint_best``: dynamic programming over t1 on whole seconds,
   lengths W + 1 ... W + 89 s; the simulator counts GPU time from its first whole
   second, so a window begins at 1 s or later). Misses: fewer requests never cost
   more, and for any price p >= 0 per miss, the sum over windows with each window's
   cost taken at its cheapest (cost(N - x) + p x) less p x m is below what any m
   misses leave (weak duality); the bound takes the best of a few prices.

The bound is the largest of 3-4, 5 and 6. It holds for every policy that lets admitted
requests finish (one that deletes replicas mid-request aborts them: the sim reports
``aborted``), which tests/benchmarks/autoscale/test_bound_property.py checks against
simulated policies on random traces. Where it is loose: with continuous batching a
request of a second or two needs no replica beyond its W-second wait, a replica's 32
slots absorb a burst, and step 6 credits the cheapest requests with finishing first
(the server shares prefill among everything it runs), so on the Azure traces at batch
32 the work term binds and the oracle stays 3-4x above it; steps 5 and 6 are not added
because a replica loaded before a window may have done step 5's work in the cold start
step 6 charges. (Tried: adding them, each window charged its fewest replicas' cold
starts less all the work that could be pending before it, a request being done by
a + W + its service at the full batch: azure-code 1.49 -> 1.53 GPU-h for 10 s more per
trace, left out.) With one request at a time, step 6 binds (a burst needs a replica
per request started, each loaded a cold start ahead).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Final

import numpy as np

from benchmarks.fleet.model import ServiceModel


@dataclass(frozen=True)
class Load:
    """One model's requests: arrival (s), prompt and output tokens."""

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray


@dataclass(frozen=True)
class Bound:
    gpu_hours: float
    concurrency_h: float  # step 3, before step 4's allowance
    work_h: float  # step 5, after its allowance
    allowance_h: float  # step 4: what the m allowed misses may save
    misses_allowed: int
    peak_required: int  # max r(t)
    burst_h: float = 0.0  # step 6, after its allowance

    @property
    def binding(self) -> str:
        terms = {"concurrency": self.concurrency_h - self.allowance_h, "work": self.work_h, "burst": self.burst_h}
        return max(terms, key=lambda k: terms[k])


def min_service_s(load: Load, service: ServiceModel) -> np.ndarray:
    """s_i: prefill alone at prefill_tps, then decode at batch 1."""
    return load.prompt / service.prefill_tps + load.output / service.decode_tps


def required_replicas(starts: np.ndarray, ends: np.ndarray, tokens: np.ndarray, service: ServiceModel
                      ) -> tuple[np.ndarray, np.ndarray]:
    """r(t) as a step function: (breakpoints, r on [breakpoints[j], breakpoints[j+1])).
    ``starts``/``ends`` bound each request's must-run interval (empty ones dropped)."""
    keep = ends > starts
    starts, ends, tokens = starts[keep], ends[keep], tokens[keep]
    if not len(starts):
        return np.zeros(1), np.zeros(1, dtype=np.int64)
    kv = float(service.kv_capacity_tokens)
    share = np.minimum(tokens, kv) / kv
    times = np.concatenate([starts, ends])
    order = np.argsort(times, kind="stable")
    dn = np.concatenate([np.ones(len(starts)), -np.ones(len(ends))])[order]
    dk = np.concatenate([share, -share])[order]
    t = times[order]
    n = np.cumsum(dn)
    k = np.cumsum(dk)
    # several events at one instant: the value after the last of them holds from there on
    last = np.r_[t[1:] != t[:-1], True]
    t, n, k = t[last], n[last], k[last]
    r = np.maximum(np.ceil(n / service.max_batch - 1e-9), np.ceil(k - 1e-9)).astype(np.int64)
    return t, np.maximum(r, 0)


def layer_cost(t: np.ndarray, r: np.ndarray, cold_s: float, until: float) -> float:
    """Step 3: GPU-seconds of the cheapest schedule keeping r(t) loaded on [0, until],
    replicas loaded at 0 for free, each later one loading ``cold_s`` first."""
    if not len(r) or r.max() <= 0:
        return 0.0
    ends = np.r_[t[1:], until]
    t0 = np.clip(t, 0.0, until)
    t1 = np.clip(ends, 0.0, until)
    total = 0.0
    for k in range(1, int(r.max()) + 1):
        on = (r >= k) & (t1 > t0)
        if not on.any():
            continue
        s, e = t0[on], t1[on]
        # merge touching pieces into stretches
        new = np.r_[True, s[1:] > e[:-1] + 1e-12]
        starts = s[new]
        stops = np.maximum.reduceat(e, np.flatnonzero(new))
        total += float(np.sum(stops - starts))
        gaps = starts[1:] - stops[:-1]
        total += float(np.sum(np.minimum(gaps, cold_s))) + min(float(starts[0]), cold_s)
    return total


def work_terms(load: Load, service: ServiceModel) -> np.ndarray:
    """Per request (rows), the loaded replica-seconds its work needs at the least, one
    column per resource a replica has (step 5): prefill at prefill_tps, decode at the
    full batch's throughput, one of max_batch slots for s_i, and its KV tokens (at most
    the cache) for s_i out of a cache of kv_capacity_tokens."""
    b = service.max_batch
    s = min_service_s(load, service)
    kv = float(service.kv_capacity_tokens)
    share = np.minimum(load.prompt + load.output, kv) / kv
    return np.stack([load.prompt / service.prefill_tps, load.output / (b * service.decode_rate(b)), s / b,
                     share * s], axis=1).reshape(-1, 4)


def _burst(terms: np.ndarray, batch: int, cold_s: float, length: float, counts: np.ndarray) -> np.ndarray:
    """Step 6's least cost for each n in ``counts``."""
    n_all = len(terms)
    if n_all == 0:
        return np.zeros(len(counts))
    prefix = np.concatenate([np.zeros((1, terms.shape[1])), np.cumsum(np.sort(terms, axis=0), axis=0)]).max(axis=1)
    js = np.arange(1, -(-n_all // batch) + 1)
    need = prefix[np.maximum(0, counts[:, None] - batch * js[None, :])]
    ok = js[None, :] * length >= need - 1e-9
    # J = ceil(n / batch) needs no loaded time at all, so each n has a feasible J; n = 0 costs nothing
    cost = np.where(ok, js[None, :] * cold_s + need, np.inf).min(axis=1)
    return np.where(counts > 0, cost, 0.0)


def burst_cost(terms: np.ndarray, batch: int, cold_s: float, length: float,
               counts: Sequence[int] | None = None) -> np.ndarray:
    """Step 6 for one window of ``length`` seconds whose ``terms`` (work_terms rows) are
    the N requests that must start in it: for each n in ``counts`` (default: N), the
    least cost of starting n of them, min over J (replicas that start them) of
    J x cold_s + P(n - batch x J), over the J whose loaded time (at most J x length) can
    hold P(n - batch x J); P(k) = the largest over the columns of the sum of the k
    smallest values."""
    ns = np.asarray([len(terms)] if counts is None else counts, dtype=np.int64)
    return _burst(terms, batch, cold_s, length, ns)


BURST_EXTRA_S: Final = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0)  # window lengths beyond W
# prices of one miss for step 6's allowance, in cold starts (a Lagrangian): the best is taken
MISS_PRICES: Final = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0)


@dataclass(frozen=True)
class Windows:
    """Step 6's candidate windows of one model, one row each: it ends at ``t1`` and,
    with the cold start before it, begins at ``start``; ``drops`` x_0 = 0 < x_1 < ...
    <= m (padded with the last), and per x_k the cost when x_{k+1} - 1 of its requests
    are missed (x_K for the last): for x in [x_k, x_{k+1}) the cost is at least that
    (fewer requests never cost more) and the miss price at least price x x_k."""

    t1: np.ndarray
    start: np.ndarray
    drops: np.ndarray
    cost: np.ndarray

    def priced(self, price: float) -> np.ndarray:
        """Step 6 per window: min over misses x of cost(N - x) + price x."""
        return np.min(self.cost + price * self.drops, axis=1)


def _drops(top: int, width: int = 0) -> np.ndarray:
    """0, 1, 2, 4, ... below ``top``, then ``top``, padded with it to ``width`` points."""
    x = [0] + [1 << k for k in range(top.bit_length()) if (1 << k) < top] + ([top] if top > 0 else [])
    return np.asarray(x + [x[-1]] * (width - len(x)), dtype=np.int64)


def burst_windows(arrival: np.ndarray, terms: np.ndarray, batch: int, wait_s: float, cold_s: float,
                  until: float, misses: int, extra_s: Sequence[float] = BURST_EXTRA_S) -> Windows:
    """Step 6's candidate windows of one model: (t1 - length - cold_s, t1], t1 whole
    seconds, lengths W + ``extra_s``, within [1, until] (the simulator counts GPU time
    from the end of its first second to the last arrival), each with the requests that
    arrive in [t1 - length, t1 - W]."""
    t1s = np.arange(1, int(math.floor(until)) + 1, dtype=float)
    lengths = wait_s + np.asarray(extra_s, dtype=float)
    t1 = np.repeat(t1s, len(lengths))
    t0 = t1 - np.tile(lengths, len(t1s))
    lo = np.searchsorted(arrival, t0, side="left")
    hi = np.searchsorted(arrival, t1 - wait_s, side="right")
    keep = (t0 - cold_s >= 1.0) & (hi > lo)
    t1, t0, lo, hi = t1[keep], t0[keep], lo[keep], hi[keep]
    width = len(_drops(misses))  # the grid of a window never has more points than that of all m misses
    drops = np.zeros((len(t1), width), dtype=np.int64)
    cost = np.zeros((len(t1), width))
    grids: dict[int, np.ndarray] = {}
    for i in range(len(t1)):
        n = int(hi[i] - lo[i])
        top = min(n, misses)
        x = grids.get(top)
        if x is None:
            x = grids[top] = _drops(top, width)
        counts = np.concatenate([n - x[1:] + 1, [n - x[-1]]])
        drops[i] = x
        cost[i] = _burst(terms[lo[i]:hi[i]], batch, cold_s, float(t1[i] - t0[i]), counts)
    return Windows(t1, t0 - cold_s, drops.astype(float), cost)


def disjoint_best(w: Windows, values: np.ndarray, until: float) -> float:
    """The most that windows whose (start, t1] are disjoint add up to, window i worth
    ``values[i]``: dynamic programming over their ends."""
    last = int(math.floor(until))
    best = np.zeros(last + 1)
    ends = w.t1.astype(np.int64)
    starts = np.floor(w.start).astype(np.int64)
    order = np.argsort(ends, kind="stable")
    i = 0
    for t1 in range(1, last + 1):
        v = best[t1 - 1]
        while i < len(order) and ends[order[i]] == t1:
            j = order[i]
            v = max(v, best[starts[j]] + values[j])
            i += 1
        best[t1] = v
    return float(best[last])


def burst_bound(per_model: Sequence[Windows], misses: int, until: float, prices: Sequence[float]) -> float:
    """Step 6 over every model: max over prices p of (sum over models of the best
    disjoint windows, each window's misses priced at p) - p x misses. For any p and any
    way the m misses fall, a window's cost is at least its priced cost less p per miss
    in it (weak duality), so each p gives a bound."""
    best = 0.0
    for p in prices:
        best = max(best, sum(disjoint_best(w, w.priced(p), until) for w in per_model) - p * misses)
    return best


def lower_bound(loads: Sequence[Load], service: ServiceModel, wait_s: float, cold_s: float, until: float,
                percentile: float) -> Bound:
    """The bound over every model of a trace (module docstring); ``cold_s`` is the
    smallest cold start a replica can have, ``until`` where GPU time stops counting."""
    if wait_s < 0 or cold_s < 0 or not 0 < percentile <= 1:
        raise ValueError(f"wait_s {wait_s}, cold_s {cold_s} must be >= 0 and percentile {percentile} in (0, 1]")
    b = service.max_batch
    n_all = sum(len(x.arrival) for x in loads)
    m = math.floor((1.0 - percentile) * n_all + 1e-9)
    conc, peak = 0.0, 0
    savings: list[np.ndarray] = []
    done_terms: list[np.ndarray] = []
    windows: list[Windows] = []
    for x in loads:
        terms = work_terms(x, service)
        windows.append(burst_windows(x.arrival, terms, b, wait_s, cold_s, until, m))
        s = min_service_s(x, service)
        starts, ends = x.arrival + wait_s, x.arrival + s
        t, r = required_replicas(starts, ends, (x.prompt + x.output).astype(float), service)
        conc += layer_cost(t, r, cold_s, until)
        peak = max(peak, int(r.max()) if len(r) else 0)
        length = np.clip(np.minimum(ends, until) - starts, 0.0, None)
        savings.append(np.where(length > 0, length + cold_s, 0.0))
        # step 5 counts a request only if even the slowest service ends by ``until``:
        # admitted by a + W, prefill shared by max_batch, decode at the full batch; and
        # only from 1 s on (the simulator counts GPU time from its first whole second)
        slowest = x.arrival + wait_s + x.prompt * b / service.prefill_tps + x.output / service.decode_rate(b)
        done = (slowest <= until) & (x.arrival >= 1.0)
        done_terms.append(terms[done])
    allowance = _top(np.concatenate(savings) if savings else np.zeros(0), m)
    done_all = np.concatenate(done_terms) if done_terms else np.zeros((0, 4))
    net = [float(done_all[:, c].sum()) - _top(done_all[:, c], m) for c in range(4)]
    work = max(net + [0.0])
    burst = burst_bound(windows, m, until, [cold_s * p for p in MISS_PRICES])
    total = max(conc - allowance, work, burst, 0.0)
    return Bound(gpu_hours=total / 3600.0, concurrency_h=conc / 3600.0, work_h=work / 3600.0,
                 allowance_h=allowance / 3600.0, misses_allowed=m, peak_required=peak, burst_h=burst / 3600.0)


def _top(v: np.ndarray, m: int) -> float:
    """Sum of the m largest values."""
    if m <= 0 or not len(v):
        return 0.0
    if m >= len(v):
        return float(v.sum())
    return float(np.partition(v, len(v) - m)[len(v) - m:].sum())


__all__ = ["Bound", "Load", "Windows", "burst_bound", "burst_cost", "burst_windows", "disjoint_best", "layer_cost",
           "lower_bound", "min_service_s", "required_replicas", "work_terms"]
