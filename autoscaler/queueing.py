"""Queueing arithmetic for the SLO rule: Erlang B and C, and the fewest replicas that
meet a queue-wait objective. Pure: numbers in, numbers (and the arithmetic as text) out.

Cost is bounded whatever the input: Erlang B of n servers takes the stable recurrence
for n <= ``RECURRENCE_MAX`` (exact, as it always did) and the Poisson form beyond it,
whose series is summed as one numpy vector of at most ``SERIES_MAX`` terms; the
replica search gallops then bisects (the wait tail falls as replicas rise), so a
decision takes O(log maxReplicas) evaluations, not one per replica or per server.
"""
from __future__ import annotations

import math
from typing import Final

import numpy as np

_EPS: Final = 1e-9
RECURRENCE_MAX: Final = 1024  # servers up to which Erlang B walks the recurrence
SERIES_MAX: Final = 1 << 20  # terms of the Poisson series beyond it (the tail below e^-50 is dropped)


def _ceil(x: float) -> int:
    """ceil that forgives float noise: 8/0.8 may be 10.000000000000002."""
    return int(math.ceil(x - _EPS))


def _series_terms(n: int, ratio: float) -> int:
    """Terms of a series whose k-th term is at most ratio^k and, near ratio 1, falls like
    exp(-k^2 / 2n): enough for both bounds to pass e^-50, and never more than SERIES_MAX."""
    gaussian = int(10 * math.sqrt(n)) + 64
    if ratio < 0.999:
        gaussian = min(gaussian, int(50 / -math.log(ratio)) + 2)
    return max(1, min(gaussian, SERIES_MAX))


def erlang_b(n: int, offered: float) -> float:
    """Blocking probability of M/M/n/n with offered load a: B(n, a) = (a^n/n!) / sum_k<=n a^k/k!."""
    if offered <= 0:
        return 0.0
    if n <= 0:
        return 1.0
    if n <= RECURRENCE_MAX:
        b = 1.0  # the stable recurrence B(k) = a B(k-1) / (k + a B(k-1))
        for k in range(1, n + 1):
            b = offered * b / (k + offered * b)
        return b
    a = float(offered)
    if n < a:
        # 1/B = sum_j prod_{i<j} (n - i)/a: terms fall from 1
        m = min(n + 1, _series_terms(n, n / a))
        logs = np.concatenate(([0.0], np.cumsum(np.log(n - np.arange(m - 1, dtype=float)) - math.log(a))))
        return float(1.0 / np.exp(logs).sum())
    # n >= a: B = p(n) / P(X <= n) with X ~ Poisson(a), P(X > n) = p(n) sum_j prod_{i=1..j} a/(n + i)
    log_p = n * math.log(a) - a - math.lgamma(n + 1)
    m = _series_terms(n, a / (n + 1))
    tail = float(np.exp(np.cumsum(math.log(a) - np.log(n + np.arange(1, m + 1, dtype=float)))).sum())
    p = math.exp(log_p)
    return p / (1.0 - p * tail)


def erlang_c(c: int, offered: float) -> float:
    """Probability an arrival waits in M/M/c with offered load a = lambda/mu (1 when a >= c)."""
    if offered <= 0:
        return 0.0
    if c <= offered:
        return 1.0
    b = erlang_b(c, offered)
    rho = offered / c
    return b / (1.0 - rho * (1.0 - b))


def wait_tail(c: int, slots: int, arrival: float, service: float, wait_bound: float) -> float:
    """P(wait > bound) with c replicas of ``slots`` concurrent requests each: the fleet is
    M/M/(c slots) at rate mu/slots per slot, offered load a = slots lambda/mu, and
    P(wait > t) = C(c slots, a) exp(-(c mu - lambda) t)."""
    n = c * slots
    offered = arrival / service * slots
    if offered >= n:
        return 1.0
    return erlang_c(n, offered) * math.exp(-(c * service - arrival) * wait_bound)


def effective_concurrency(service_rate: float, seconds_alone: float, max_num_seqs: int) -> int:
    """``concurrencyPerReplica`` from one load test: the requests a replica runs at once
    without slowing each other, round(mu x s1) within [1, max_num_seqs].

    mu is the replica's throughput at saturation (serviceRatePerReplica, req/s) and s1 the
    mean seconds one request of the same mix takes alone. Little's law on the two ends of
    the test: k servers of rate 1/s1 serve k/s1 = mu at saturation and a lone request in
    s1, which is what the queueing rule's M/M/(c x k) assumes. A prefill-bound mix runs
    few at once at full speed (azure-code: 1.51 req/s x 1.47 s -> 2); a decode-bound one
    runs many (40 s requests at 0.49 req/s -> 20); one request at a time gives 1 (mu =
    1/s1). The server's own limit (--max-num-seqs) is only the ceiling: slots that slow
    every request down are not servers."""
    if not (math.isfinite(service_rate) and service_rate > 0):
        raise ValueError(f"service rate must be a finite number > 0 req/s, got {service_rate!r}")
    if not (math.isfinite(seconds_alone) and seconds_alone > 0):
        raise ValueError(f"seconds alone must be a finite number > 0, got {seconds_alone!r}")
    if max_num_seqs < 1:
        raise ValueError(f"max_num_seqs must be at least 1, got {max_num_seqs}")
    return max(1, min(int(max_num_seqs), int(round(service_rate * seconds_alone))))


def replicas_for_slo(arrival: float, service: float, target_utilization: float,
                     wait_bound: float | None, percentile: float, cap: int,
                     concurrency: int = 1) -> tuple[int, str]:
    """Fewest replicas c with lambda/(c mu) <= target and P(wait > bound) <= 1 - percentile.

    A replica runs up to ``concurrency`` = B requests at once (``effective_concurrency``:
    mu times one request's time alone, at most vLLM's --max-num-seqs), and
    a request waits only when every slot of every replica is busy (see ``wait_tail``).
    B = 1 is M/M/c. The utilisation bound alone may ask for more than ``cap`` (the caller
    clamps and says so); the wait bound is searched up to ``cap`` and gives ``cap`` if
    missed there."""
    if arrival <= 0:
        return 0, f"arrival {arrival:g} req/s -> 0"
    b_slots = max(1, int(concurrency))
    c_util = max(1, _ceil(arrival / service / target_utilization))
    text = f"ceil({arrival:g}/({service:g}*{target_utilization:g}))={c_util}"
    if wait_bound is None or c_util >= cap:
        return c_util, text
    model = "" if b_slots == 1 else f" (M/M/cB, B={b_slots})"
    limit = (1.0 - percentile) + _EPS

    def tail(c: int) -> float:
        return wait_tail(c, b_slots, arrival, service, wait_bound)

    t = tail(c_util)
    if t <= limit:
        return c_util, f"{text}; P(wait>{wait_bound:g}s){model}={t:.2g} <= {1 - percentile:.2g}"
    # gallop up from c_util, then bisect between the last miss and the first hit
    lo, step, hi, t_hi = c_util, 1, None, math.inf
    top = max(cap, c_util)
    while hi is None:
        cand = min(top, lo + step)
        t_c = tail(cand)
        if t_c <= limit:
            hi, t_hi = cand, t_c
        elif cand == top:
            return top, f"{text}; P(wait>{wait_bound:g}s){model} still {t_c:.3g} at {top}"
        else:
            lo, step = cand, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        t_m = tail(mid)
        if t_m <= limit:
            hi, t_hi = mid, t_m
        else:
            lo = mid
    return hi, f"{text}, but P(wait>{wait_bound:g}s) <= {1 - percentile:.2g}{model} needs {hi} ({t_hi:.2g})"


__all__ = ["erlang_b", "erlang_c", "wait_tail", "replicas_for_slo", "effective_concurrency", "RECURRENCE_MAX"]
