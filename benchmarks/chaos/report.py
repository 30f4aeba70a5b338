"""Running the fault cases on one bed and writing their report (JSON + markdown)."""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.chaos.bed import ChaosBed
from benchmarks.chaos.cases import CASES, CaseResult, burst_nodes

# figures summed over the cases for the headline
TOTALS = ("pods_created", "pods_lost", "double_booked", "nodes_overcommitted", "extender_view_overcommitted",
          "bound_without_gpu_ids",
          "scale_downs_during", "duplicate_scale_actions", "placed_on_stale_node")


def run(pods: int = 1000, outage_s: float = 120.0, lease_s: float = 15.0, extender_down_s: float = 5.0,
        apiserver_down_s: float = 5.0, cases: list[str] | None = None, state: str | None = None,
        progress=print, scheduler_lease_s: float = 6.0) -> tuple[dict[str, Any], list[CaseResult]]:
    names = cases or list(CASES)
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    nodes = burst_nodes(pods)
    params = {"pods": pods, "nodes": nodes, "outage_s": outage_s, "lease_s": lease_s,
              "extender_down_s": extender_down_s, "apiserver_down_s": apiserver_down_s, "cases": names,
              "scheduler_lease_s": scheduler_lease_s}
    tmp = None if state else tempfile.TemporaryDirectory(prefix="gpusched-chaos-")
    bed = ChaosBed(state or tmp.name, nodes)
    t0 = time.monotonic()
    bed.up()
    results: list[CaseResult] = []
    try:
        kwargs = {"extender-kill": {"pods": pods, "down_s": extender_down_s},
                  "extender-kill-not-ignorable": {"pods": pods, "down_s": extender_down_s},
                  "extender-kill-direct": {"pods": pods, "down_s": extender_down_s},
                  "stale-report": {}, "prometheus-outage": {"outage_s": outage_s},
                  "leader-kill": {"lease_s": lease_s}, "apiserver-restart": {"down_s": apiserver_down_s},
                  "scheduler-pair-kill": {"pods": pods, "lease_s": scheduler_lease_s}}
        for name in names:
            progress(f"chaos: {name} ...")
            t_case = time.monotonic()
            try:
                res = CASES[name](bed, **kwargs[name])
            except Exception as exc:  # noqa: BLE001 - a broken bed is a failed case, reported with the rest
                res = CaseResult(name, CASES[name].__doc__.split("\n")[0].strip() if CASES[name].__doc__ else name,
                                 f"the case could not run: {type(exc).__name__}: {exc}", False, {},
                                 round(time.monotonic() - t_case, 1))
            progress(f"chaos: {name}: {'passed' if res.passed else 'FAILED'} in {res.seconds:.0f}s")
            results.append(res)
    finally:
        bed.down()
        if tmp is not None:
            tmp.cleanup()
    params["wall_s"] = round(time.monotonic() - t0, 1)
    return params, results


def summary(results: list[CaseResult]) -> dict[str, Any]:
    out: dict[str, Any] = {"cases_run": len(results), "faults_survived": sum(r.passed for r in results)}
    for key in TOTALS:
        vals = [r.figures[key] for r in results if key in r.figures]
        if vals:
            out[key] = sum(vals)
    return out


def params_line(params: dict[str, Any]) -> str:
    return (f"chaos: {params['pods']}-pod burst on {params['nodes']} nodes (8 x H100 each), Prometheus outage "
            f"{params['outage_s']:g}s, autoscaler Lease {params['lease_s']:g}s, extender down "
            f"{params['extender_down_s']:g}s, kube-apiserver down {params['apiserver_down_s']:g}s, scheduler Lease "
            f"{params.get('scheduler_lease_s', 6.0):g}s; "
            f"wall {params.get('wall_s', 0):.0f}s")


def _fig(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def table(results: list[CaseResult]) -> str:
    s = summary(results)
    lines = ["| case | result | s | figures |", "|---|---|---:|---|"]
    for r in results:
        figs = ", ".join(f"{k} {_fig(v)}" for k, v in r.figures.items() if k not in ("renew_before_kill",))
        lines.append(f"| {r.name} | {'passed' if r.passed else 'FAILED'} | {r.seconds:.0f} | {figs} |")
    lines.append("")
    lines.append("totals: " + ", ".join(f"{k} {_fig(v)}" for k, v in s.items()))
    lines.append("")
    for r in results:
        lines.append(f"- **{r.name}**: checked: {r.checked}.")
        lines.append(f"  found: {r.found}.")
    return "\n".join(lines)


def write(out: Path, params: dict[str, Any], results: list[CaseResult]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos.json").write_text(json.dumps({"params": params, "summary": summary(results),
                                                "cases": [asdict(r) for r in results]}, indent=1, default=str))
    text = table(results)
    (out / "chaos.md").write_text(params_line(params) + "\n\n" + text + "\n")
    return text
