"""What Prometheus answers to ``rate(c[w])`` for one series, so the trace simulator reads
the arrival rate as the daemon's query does (autoscaler.signals.arrival_rate_query:
per-pod rates of the success counter, summed, plus the growth of the fleet's waiting and
running requests over the window) instead of as a perfect count of arrivals. Pure
functions over the samples of one series; behaviour from Prometheus' promql/functions.go
(``extrapolatedRate``), checked against the real promtool in
tests/benchmarks/autoscale/test_promql.py.

What a rate changes against a perfect count: a pod scraped once within the window has no
rate (a new pod's first completions are missed until its second scrape), and a series
that starts or ends inside the window is extrapolated by at most 1.1 scrape intervals (or
to where the counter would be 0), else by half of one.

The range: Prometheus 2.x selects samples in [t - w, t], 3.x in (t - w, t]. They differ
only for a sample exactly at t - w. The simulator's scrapes and decisions fall on whole
seconds together, where a real scrape's timestamp (milliseconds, offset per target) and
a real query's time never meet, so ``in_range`` takes the open start: the count of
samples a real query finds at any other instant.
"""
from __future__ import annotations

import numpy as np


def in_range(t: np.ndarray, at: float, range_s: float) -> np.ndarray:
    """Which samples a range selector ``[range_s]`` evaluated at ``at`` holds: (at - range_s, at]."""
    return (t > at - range_s) & (t <= at)


def rate(t: np.ndarray, v: np.ndarray, at: float, range_s: float) -> float | None:
    """``rate(c[range_s])`` at ``at`` over a counter's samples (times ``t`` ascending, values
    ``v``) within the range; None (no series in the result) with fewer than two."""
    if len(t) < 2:
        return None
    prev = v[:-1]
    resets = float(np.sum(np.where(v[1:] < prev, prev, 0.0)))
    increase = float(v[-1] - v[0]) + resets
    sampled = float(t[-1] - t[0])
    to_start = float(t[0] - (at - range_s))
    to_end = float(at - t[-1])
    average = sampled / (len(t) - 1)
    if increase > 0 and v[0] >= 0:
        # a counter does not run below zero: extrapolating further back would invent requests
        to_start = min(to_start, sampled * float(v[0]) / increase)
    threshold = average * 1.1
    span = sampled + (to_start if to_start < threshold else average / 2) \
        + (to_end if to_end < threshold else average / 2)
    return increase * span / sampled / range_s


__all__ = ["in_range", "rate"]
