"""The placement plot's zoomed panel: it shows the curves' ends, the right way round,
whether or not a pod failed."""
from __future__ import annotations

import pytest

from benchmarks.placement import report, sim
from benchmarks.placement.trace import Pod, Pods
from tests.benchmarks.placement.tiny import nodes


def result(end: float, arrived: float, failed: bool) -> sim.Result:
    """A 100-GPU cluster: demand `arrived` and allocation `end` (fractions) at the end."""
    return sim.Result(trace="t", policy="p", description="", pods_total=1, pods_placed=1,
                      gpu_allocation_at_first_failure=end, allocated_gpus=100 * end, total_gpus=100,
                      arrived_demand_at_first_failure=arrived, stranded_gpus=0, fgd_fragmented_gpus=0,
                      unallocated_gpus=100 * (1 - end), first_failure={"pod": "x", "demand": "1"} if failed else None,
                      runtime_s=0, arrived_milli=[0, int(arrived * 100_000)], allocated_milli=[0, int(end * 100_000)])


# ends (allocation %, demand arrived %, failed)       -> x_lo, x_hi, y_lo, y_hi
WINDOWS = [
    # failures near full: from 75 to just past the last demand (98 + 1)
    ([(0.90, 0.95, True), (0.93, 0.98, True)], (75, 99, 75, 99)),
    # one end at 70 (> 60): 70 - 3 = 67
    ([(0.70, 0.80, True), (0.93, 0.98, True)], (67, 99, 67, 99)),
    # an early failure at 30 (<= 60) stays on the full panel only
    ([(0.30, 0.35, True), (0.93, 0.98, True)], (75, 99, 75, 99)),
    # nothing failed, the trace filled 40%: from 40 - 3 = 37 to 41, widened to 5 points: 42
    # (it was 75..41: empty, and x reversed)
    ([(0.40, 0.40, False), (0.40, 0.40, False)], (37, 42, 37, 42)),
    # nothing failed, 90% allocated of 90% arrived
    ([(0.90, 0.90, False)], (75, 91, 75, 91)),
    # nothing placed at all: still a window 5 wide
    ([(0.0, 0.0, False)], (0, 5, 0, 5)),
]


@pytest.mark.parametrize("ends,window", WINDOWS)
def test_zoom_window(ends, window):
    rows = [result(*e) for e in ends]
    got = report.zoom_window(rows)
    assert got == pytest.approx(window)
    x_lo, x_hi, y_lo, y_hi = got
    assert x_lo < x_hi and y_lo < y_hi
    for r in rows:  # every curve's end is inside unless it is one left to the full panel
        x, y = 100 * r.arrived_milli[-1] / 100_000, 100 * r.gpu_allocation_at_first_failure
        assert (x_lo <= x <= x_hi and y_lo <= y <= y_hi) or y <= 60


def test_plot_when_no_pod_fails(tmp_path):
    pytest.importorskip("matplotlib")
    ns = nodes((32000, 65536, 8, "T4"))
    ps = Pods("t", tuple(Pod(f"p{i}", i + 2, 1000, 0, 1, 1000, frozenset()) for i in range(3)),
              "creation_time order", 0)
    r = sim.replay(ns, ps, sim.make_policy("best-fit"), seed=1, keep_going=True)
    assert r.first_failure is None and r.gpu_allocation_at_first_failure == pytest.approx(3 / 8)
    x_lo, x_hi, _, _ = report.zoom_window([r])
    assert x_lo <= 100 * 3 / 8 < x_hi
    (png,) = report.plots(tmp_path, [r], {"seed": 1})[:1]
    assert png.stat().st_size > 0


def run(trace: str, seed: int, policy: str, unallocated: float | None, first_failure: float) -> sim.Result:
    """A Monte Carlo run's figures: unallocated GPUs at 100% arrived, allocation at the first failure."""
    return sim.Result(trace=trace, policy=policy, description="", pods_total=1, pods_placed=1,
                      gpu_allocation_at_first_failure=first_failure, allocated_gpus=0, total_gpus=100,
                      arrived_demand_at_first_failure=0, stranded_gpus=0, fgd_fragmented_gpus=0, unallocated_gpus=0,
                      first_failure=None, runtime_s=0, seed=seed, unallocated_gpus_at_100pct=unallocated)


# (trace, seed, policy, unallocated at 100%, first failure)                -> verdict lines
VERDICTS = [
    # 280 <= 800 on both seeds; 0.40 = best-fit's 0.40 counts as met (at least), 0.50 > 0.45
    ([("t", 1, "gpusched", 280.0, 0.40), ("t", 1, "fgd", 800.0, 0.45), ("t", 1, "best-fit", 810.0, 0.40),
      ("t", 2, "gpusched", 290.0, 0.50), ("t", 2, "fgd", 790.0, 0.45), ("t", 2, "best-fit", 820.0, 0.45)],
     ["- gpusched's unallocated GPUs at 100% arrived <= FGD's: met on 2 of 2 runs",
      "- gpusched's GPU allocation at the first failure >= best-fit's: met on 2 of 2 runs"]),
    # seed 2: 414.5 > 358.3 and 0.581 < 0.718, each named with both figures
    ([("t", 1, "gpusched", 348.6, 0.126), ("t", 1, "fgd", 409.6, 0.122), ("t", 1, "best-fit", 468.6, 0.122),
      ("t", 2, "gpusched", 414.5, 0.581), ("t", 2, "fgd", 358.3, 0.5), ("t", 2, "best-fit", 454.0, 0.718)],
     ["- gpusched's unallocated GPUs at 100% arrived <= FGD's: met on 1 of 2 runs; MISSED on seed 2 (414.5 "
      "against 358.3)",
      "- gpusched's GPU allocation at the first failure >= best-fit's: met on 1 of 2 runs; MISSED on seed 2 "
      "(58.1% against 71.8%)"]),
    # no FGD in the run: only best-fit's target; several traces: a miss names its trace
    ([("a", 1, "gpusched", 300.0, 0.3), ("a", 1, "best-fit", 900.0, 0.2),
      ("b", 1, "gpusched", 300.0, 0.1), ("b", 1, "best-fit", 900.0, 0.2)],
     ["- gpusched's GPU allocation at the first failure >= best-fit's: met on 1 of 2 runs; MISSED on b seed 1 "
      "(10.0% against 20.0%)"]),
    # creation order (no figure at 100% arrived): no run for FGD's target
    ([("t", 1, "gpusched", None, 0.40), ("t", 1, "fgd", None, 0.19), ("t", 1, "best-fit", None, 0.19)],
     ["- gpusched's GPU allocation at the first failure >= best-fit's: met on 1 of 1 run"]),
    # FGD ran at seed 1 only: one run for its target, two for best-fit's; the same pod list
    # given twice (rows repeated) counts once
    ([("t", 1, "gpusched", 300.0, 0.3), ("t", 1, "fgd", 250.0, 0.3), ("t", 1, "best-fit", 900.0, 0.2),
      ("t", 2, "gpusched", 300.0, 0.3), ("t", 2, "best-fit", 900.0, 0.2),
      ("t", 2, "gpusched", 300.0, 0.3), ("t", 2, "best-fit", 900.0, 0.2)],
     ["- gpusched's unallocated GPUs at 100% arrived <= FGD's: met on 0 of 1 run; MISSED on seed 1 (300.0 "
      "against 250.0)",
      "- gpusched's GPU allocation at the first failure >= best-fit's: met on 2 of 2 runs"]),
    # gpusched not in the run: nothing to judge
    ([("t", 1, "fgd", 800.0, 0.45), ("t", 1, "best-fit", 810.0, 0.40)], []),
]


@pytest.mark.parametrize("rows,want", VERDICTS)
def test_verdict_counts_gpusched_against_fgd_and_best_fit_run_by_run(rows, want):
    assert report.verdict([run(*r) for r in rows]) == want
