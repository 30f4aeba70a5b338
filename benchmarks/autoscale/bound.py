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
   batch) and offers max_batch slots, each held by request i for at least s_i. So the
   loaded GPU-seconds are at least each of sum(prompt)/prefill_tps,
   sum(output)/(max_batch x decode_rate(max_batch)) and sum(s_i)/max_batch, over the
   requests that must finish before the trace's end (GPU time is counted to the last
   arrival), less the m largest terms.

The bound is the larger of 3-4 and 5. It holds for every policy that lets admitted
requests finish (one that deletes replicas mid-request aborts them: the sim reports
``aborted``). It is loose where queueing, not work, sets the fleet: with continuous
batching a request of a second or two needs no replica beyond its W-second wait, and
only the work term is left; with one request at a time and requests longer than W
(diffusion, long generations) the concurrency term is close to what must be held.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Sequence

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

    @property
    def binding(self) -> str:
        return "concurrency" if self.concurrency_h - self.allowance_h >= self.work_h else "work"


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


def lower_bound(loads: Sequence[Load], service: ServiceModel, wait_s: float, cold_s: float, until: float,
                percentile: float) -> Bound:
    """The bound over every model of a trace (module docstring); ``cold_s`` is the
    smallest cold start a replica can have, ``until`` where GPU time stops counting."""
    if wait_s < 0 or cold_s < 0 or not 0 < percentile <= 1:
        raise ValueError(f"wait_s {wait_s}, cold_s {cold_s} must be >= 0 and percentile {percentile} in (0, 1]")
    b = service.max_batch
    decode_max = b * service.decode_rate(b)
    n_all = sum(len(x.arrival) for x in loads)
    m = math.floor((1.0 - percentile) * n_all + 1e-9)
    conc, peak = 0.0, 0
    savings: list[np.ndarray] = []
    prefill, decode, slots = [], [], []
    for x in loads:
        s = min_service_s(x, service)
        starts, ends = x.arrival + wait_s, x.arrival + s
        t, r = required_replicas(starts, ends, (x.prompt + x.output).astype(float), service)
        conc += layer_cost(t, r, cold_s, until)
        peak = max(peak, int(r.max()) if len(r) else 0)
        length = np.clip(np.minimum(ends, until) - starts, 0.0, None)
        savings.append(np.where(length > 0, length + cold_s, 0.0))
        # step 5 counts a request only if even the slowest service ends by ``until``:
        # admitted by a + W, prefill shared by max_batch, decode at the full batch
        slowest = x.arrival + wait_s + x.prompt * b / service.prefill_tps + x.output / service.decode_rate(b)
        done = slowest <= until
        prefill.append(x.prompt[done] / service.prefill_tps)
        decode.append(x.output[done] / decode_max)
        slots.append(s[done] / b)
    allowance = _top(np.concatenate(savings) if savings else np.zeros(0), m)
    work = 0.0
    for terms in (prefill, decode, slots):
        v = np.concatenate(terms) if terms else np.zeros(0)
        work = max(work, float(v.sum()) - _top(v, m))
    total = max(conc - allowance, work, 0.0)
    return Bound(gpu_hours=total / 3600.0, concurrency_h=conc / 3600.0, work_h=work / 3600.0,
                 allowance_h=allowance / 3600.0, misses_allowed=m, peak_required=peak)


def _top(v: np.ndarray, m: int) -> float:
    """Sum of the m largest values."""
    if m <= 0 or not len(v):
        return 0.0
    if m >= len(v):
        return float(v.sum())
    return float(np.partition(v, len(v) - m)[len(v) - m:].sum())


__all__ = ["Bound", "Load", "layer_cost", "lower_bound", "min_service_s", "required_replicas"]
