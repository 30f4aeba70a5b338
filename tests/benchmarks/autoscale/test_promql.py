"""benchmarks.autoscale.promql against the real Prometheus engine (promtool, Debian's
prometheus package that the test bed runs): random series with gaps, resets and pods
that come and go, evaluated off the scrape grid, must read as promtool reads them."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from benchmarks.autoscale import promql

STEP = 15.0


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
    # one jump at the last sample: least squares h / 75 over 0..60 s, the end points h / 60
    five = np.arange(0.0, 61.0, 15.0)
    assert promql.deriv(five, np.array([0, 0, 0, 0, 30.0])) == pytest.approx(30 / 75)
    assert promql.rate(t[:1], np.array([1.0]), 67.0, 60.0) is None
    assert promql.deriv(t[:1], np.array([1.0])) is None
    assert list(promql.in_range(five, 60.0, 60.0)) == [False, True, True, True, True]


def _series(rng: np.random.Generator, n: int, counter: bool) -> list[float | None]:
    first, last = sorted(rng.integers(0, n, size=2))
    out: list[float | None] = []
    v = float(rng.integers(0, 5))
    for k in range(n):
        if not first <= k <= last or rng.random() < 0.1:
            out.append(None)
            continue
        if counter:
            v = float(rng.integers(0, 4)) if rng.random() < 0.05 else v + float(rng.integers(0, 9))
        else:
            v = float(rng.integers(0, 40))
        out.append(v)
    return out


def _got(stdout: str) -> dict[tuple[str, str], dict[str, float]]:
    """promtool's failure report: per (expr, eval time) the samples it computed."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for m in re.finditer(r'expr: "(.*?)", time: (\S+?),\n\s+exp:.*\n\s+got: (.*)', stdout):
        out[(m.group(1), m.group(2))] = {pod: float(v) for pod, v in re.findall(r'pod="(\w+)"\} (\S+?)(?:,|$)',
                                                                                 m.group(3))}
    return out


def test_rate_and_deriv_read_as_promtool_reads_them(tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool (Debian's prometheus package, which the test bed runs) is needed: "
                    "apt-get install prometheus", pytrace=False)
    rng = np.random.default_rng(7)
    n = 30
    pods = [f"p{i}" for i in range(8)]
    series = {(kind, p): _series(rng, n, kind == "c") for kind in ("c", "g") for p in pods}
    # whole seconds (promtool's durations) off the 15 s grid (where 2.x and 3.x differ: promql.py),
    # before the input's last sample at 435 s
    times = [67.0, 89.0, 112.0, 143.0, 173.0, 202.0, 241.0, 271.0, 301.0, 344.0, 388.0, 421.0]
    ranges = {"1m": 60.0, "30s": 30.0}
    tests = [{"expr": f"{fn}({kind}[{r}])", "eval_time": f"{int(at)}s", "exp_samples": []}
             for at in times for r in ranges for fn, kind in (("rate", "c"), ("deriv", "g"))]
    # promtool loads the input only up to its last evaluation step: steps of 1 s, so a
    # query off the scrape grid sees every sample before it
    doc = {"rule_files": [], "evaluation_interval": "1s", "tests": [{
        "interval": f"{STEP:g}s",
        "input_series": [{"series": f'{kind}{{pod="{p}"}}',
                          "values": " ".join("_" if v is None else f"{v:g}" for v in vals)}
                         for (kind, p), vals in series.items()],
        "promql_expr_test": tests}]}
    path = tmp_path / "promql.yml"
    path.write_text(yaml.safe_dump(doc))
    r = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    got = _got(r.stdout + r.stderr)
    checked = 0
    for at in times:
        for r_name, r_s in ranges.items():
            for fn, kind in (("rate", "c"), ("deriv", "g")):
                report = got.get((f"{fn}({kind}[{r_name}])", _go_duration(at)), {})
                for p in pods:
                    vals = series[(kind, p)]
                    t = np.array([k * STEP for k, v in enumerate(vals) if v is not None])
                    v = np.array([v for v in vals if v is not None], dtype=float)
                    keep = promql.in_range(t, at, r_s)
                    ours = promql.rate(t[keep], v[keep], at, r_s) if fn == "rate" else promql.deriv(t[keep], v[keep])
                    theirs = report.get(p)
                    assert (ours is None) == (theirs is None), (fn, r_name, at, p, ours, theirs)
                    if ours is not None:
                        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), (fn, r_name, at, p)
                        checked += 1
    assert checked > 100  # most pods have two samples in most ranges: the comparison is not vacuous


def _go_duration(s: float) -> str:
    """How promtool prints an eval time (Go's time.Duration: 1m7s, 5m0s)."""
    m, sec = divmod(int(s), 60)
    return f"{m}m{sec}s" if m else f"{sec}s"
