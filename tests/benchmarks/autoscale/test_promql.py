"""benchmarks.autoscale.promql against the real Prometheus engine (tests/promtool.py):
random counters with gaps, resets and pods that come and go, evaluated off the scrape
grid, must read as promtool reads them."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.autoscale import promql
from tests.promtool import evaluate

STEP = 15


def test_rows_show_the_arithmetic():
    t = np.array([45.0, 60.0])
    # 4 -> 9 over 15 s; the counter would be 0 at 45 - 15 x 4/5 = 33 s, so the range (7, 67]
    # is extrapolated back 12 s and forward 7 s: 5 x (15 + 12 + 7) / 15 / 60
    assert promql.rate(t, np.array([4.0, 9.0]), 67.0, 60.0) == pytest.approx(5 * 34 / 15 / 60)
    # the start 38 s before the first sample is beyond 1.1 x 15: half a scrape, 7.5 s, instead
    assert promql.rate(t, np.array([40.0, 45.0]), 67.0, 60.0) == pytest.approx(5 * (15 + 7.5 + 7) / 15 / 60)
    # a reset (9 -> 2) adds the 9 before it: 2 - 3 + 9 = 8, and the counter would be 0
    # 30 x 3 / 8 = 11.25 s before its first sample: 8 x (30 + 11.25) / 30 / 60
    three = np.array([30.0, 45.0, 60.0])
    assert promql.rate(three, np.array([3.0, 9.0, 2.0]), 60.0, 60.0) == pytest.approx(8 * 41.25 / 30 / 60)
    assert promql.rate(t[:1], np.array([1.0]), 67.0, 60.0) is None
    assert list(promql.in_range(np.arange(0.0, 61.0, 15.0), 60.0, 60.0)) == [False, True, True, True, True]


def _counter(rng: np.random.Generator, n: int) -> list[float | None]:
    first, last = sorted(rng.integers(0, n, size=2))
    out: list[float | None] = []
    v = float(rng.integers(0, 5))
    for k in range(n):
        if not first <= k <= last or rng.random() < 0.1:
            out.append(None)
            continue
        v = float(rng.integers(0, 4)) if rng.random() < 0.05 else v + float(rng.integers(0, 9))
        out.append(v)
    return out


def test_rate_reads_as_promtool_reads_it(tmp_path):
    rng = np.random.default_rng(7)
    n = 30
    pods = [f"p{i}" for i in range(10)]
    series = {p: _counter(rng, n) for p in pods}
    # whole seconds (promtool's durations) off the 15 s grid (where 2.x and 3.x differ: promql.py),
    # before the input's last sample at 435 s
    times = [67, 89, 112, 143, 173, 202, 241, 271, 301, 344, 388, 421]
    ranges = {"1m": 60.0, "30s": 30.0}
    queries = [(f"rate(c[{r}])", at) for at in times for r in ranges]
    got = evaluate(tmp_path, {f'c{{pod="{p}"}}': v for p, v in series.items()}, STEP, queries)
    checked = 0
    for at in times:
        for r_name, r_s in ranges.items():
            report = got[(f"rate(c[{r_name}])", at)]
            for p in pods:
                t = np.array([k * STEP for k, v in enumerate(series[p]) if v is not None], dtype=float)
                v = np.array([v for v in series[p] if v is not None], dtype=float)
                keep = promql.in_range(t, at, r_s)
                ours = promql.rate(t[keep], v[keep], at, r_s)
                theirs = report.get(f'{{pod="{p}"}}')
                assert (ours is None) == (theirs is None), (r_name, at, p, ours, theirs)
                if ours is not None:
                    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), (r_name, at, p)
                    checked += 1
    assert checked > 50  # most pods have two samples in most ranges: the comparison is not vacuous
