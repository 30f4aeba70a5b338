"""PromQL evaluated by the real Prometheus engine: ``promtool test rules`` (Debian's
prometheus package, which the test bed runs) over series given sample by sample."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

import pytest
import yaml


def evaluate(tmp: Path, series: Mapping[str, Sequence[float | str | None]], step_s: int,
             queries: Sequence[tuple[str, int]]) -> dict[tuple[str, int], dict[str, float]]:
    """Per (expr, eval time in whole seconds): its result, {labels: value} ({} when
    empty). ``series``: a selector like 'c{pod="a"}' -> one value per ``step_s`` from 0
    (None: no sample; "stale": a staleness marker, the target gone). Each test expects
    nothing, so promtool reports what it got."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool (Debian's prometheus package, which the test bed runs) is needed: "
                    "apt-get install prometheus", pytrace=False)
    # promtool loads the input only up to its last evaluation step: steps of 1 s, so a
    # query off the scrape grid sees every sample before it
    doc = {"rule_files": [], "evaluation_interval": "1s", "tests": [{
        "interval": f"{step_s}s",
        "input_series": [{"series": s, "values": " ".join(_value(v) for v in vals)}
                         for s, vals in series.items()],
        "promql_expr_test": [{"expr": e, "eval_time": f"{t}s", "exp_samples": []} for e, t in queries]}]}
    path = tmp / "promtool-eval.yml"
    path.write_text(yaml.safe_dump(doc))
    r = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    got: dict[tuple[str, str], dict[str, float]] = {}
    for m in re.finditer(r'expr: "(.*?)", time: (\S+?),\n\s+exp:.*\n\s+got: (.*)', r.stdout + r.stderr):
        got[(m.group(1).replace('\\"', '"'), m.group(2))] = {
            labels: float(v) for labels, v in re.findall(r"(\{[^}]*\}) (\S+?)(?:, |$)", m.group(3))}
    if "FAILED" in r.stdout + r.stderr and not got:
        pytest.fail(f"promtool failed: {r.stdout}{r.stderr}", pytrace=False)
    return {(e, t): got.get((e, _go_duration(t)), {}) for e, t in queries}


def _value(v: float | str | None) -> str:
    return "_" if v is None else v if isinstance(v, str) else f"{v:g}"


def _go_duration(s: int) -> str:
    """How promtool prints an eval time (Go's time.Duration): 67 -> 1m7s, 300 -> 5m0s."""
    m, sec = divmod(s, 60)
    return f"{m}m{sec}s" if m else f"{sec}s"
