"""Where a run's misses fell (report.worst_minutes), as the JSON rows and the verdict give it; whom
a run cites (report.citation)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.autoscale.report import citation, rows_of, trace_name, verdict, worst_minutes
from benchmarks.autoscale.sim import RunResult, WorkloadResult

INF = math.inf
# (t, serving, warm, holding GPUs), as the simulator records at each tick
TIMELINE = [(0.0, 1, 0, 1), (130.0, 3, 1, 4), (200.0, 2, 0, 2)]


def _m(minute, misses, arrivals, before, serving, warm):
    return {"minute": minute, "misses": misses, "arrivals": arrivals, "arrivals_before": before,
            "serving_at_start": serving, "warm_at_start": warm}


@pytest.mark.parametrize("name, arrivals, waits, top, want", [
    ("no miss, no minute", [1, 2, 70], [0, 2.0, 1.9], 5, []),
    # minute 2 (t 120-179): 3 arrivals, 2 past 2 s; minute 0 had 1 (arrivals before minute 2: 0 at
    # minute -1, 1 at 0, 1 at 1); at t 120 the timeline's last entry is t 0 (1 serving)
    ("one minute", [10, 70, 125, 130, 170], [0, 0, 5, INF, 1], 5, [_m(2, 2, 3, [0, 1, 1], 1, 0)]),
    # one miss each in minutes 1 (61), 3 (190) and 4 (250): ties go to the earlier minute. Arrivals
    # per minute are 0, 2, 0, 2, 1, so minute 4's three before are 2, 0, 2; minute 3 starts at 180,
    # after the entry at 130 (3 serving, 1 warm), minute 4 at 240, after the one at 200
    ("most first, then earliest", [61, 62, 190, 191, 250], [3, 0, 3, 0, 9], 5,
     [_m(1, 1, 2, [0, 0, 0], 1, 0), _m(3, 1, 2, [0, 2, 0], 3, 1), _m(4, 1, 1, [2, 0, 2], 2, 0)]),
    # minute 1 now has 2 misses (61, 62) and comes first; top 1 keeps only it
    ("top cuts", [61, 62, 190, 191, 250], [3, 3, 3, 0, 9], 1, [_m(1, 2, 2, [0, 0, 0], 1, 0)]),
])
def test_worst_minutes(name, arrivals, waits, top, want):
    got = worst_minutes(np.array(arrivals, dtype=float), np.array(waits, dtype=float), 2.0, TIMELINE, top)
    assert got == want, name


def test_before_the_timeline_the_replicas_are_unknown():
    assert worst_minutes(np.array([5.0]), np.array([3.0]), 2.0, [(60.0, 1, 0, 1)]) == [_m(0, 1, 1, [0, 0, 0],
                                                                                          None, None)]
    assert worst_minutes(np.array([5.0]), np.array([3.0]), 2.0, []) == [_m(0, 1, 1, [0, 0, 0], None, None)]


def _workload(model, arrivals, waits):
    n = len(arrivals)
    return WorkloadResult(model=model, requests=n, queue_wait=np.array(waits, dtype=float), ttft=np.zeros(n),
                          aborted=0, gpu_s={"serving": 3600.0}, cold_starts={}, promotions=0, scale_events=0,
                          prefetches=0, timeline=TIMELINE, decisions=[], arrivals=np.array(arrivals, dtype=float))


def test_rows_name_the_model_when_there_are_several_and_the_verdict_says_where():
    run = RunResult("ours", 300.0, [_workload("a", [10, 130], [3, 0]), _workload("b", [130, 131], [3, 3])])
    row, = rows_of("t", [run], {}, 2.0, 5.0)
    assert row.worst_minutes == [dict(_m(2, 2, 2, [0, 0, 0], 1, 0), model="b"),
                                 dict(_m(0, 1, 1, [0, 0, 0], 1, 0), model="a")]
    assert ("- ours' misses fell most in minute 2 of b (2 of 2 arrivals, after 0, 0, 0 in the three minutes "
            "before; 1 serving, 0 warm at its start); 0 of a (1 of 1 arrivals, after 0, 0, 0 in the three minutes "
            "before; 1 serving, 0 warm at its start)") in verdict([row])
    # the same minute in two models is two entries, the larger first
    tie, = rows_of("t", [RunResult("ours", 300.0, [_workload("a", [130], [3]), _workload("b", [131, 132], [3, 3])])],
                   {}, 2.0, 5.0)
    assert [(x["model"], x["minute"], x["misses"]) for x in tie.worst_minutes] == [("b", 2, 2), ("a", 2, 1)]
    one, = rows_of("t", [RunResult("ours", 300.0, [_workload("a", [10, 130], [3, 0])])], {}, 2.0, 5.0)
    assert one.worst_minutes == [_m(0, 1, 1, [0, 0, 0], 1, 0)]
    met, = rows_of("t", [RunResult("ours", 300.0, [_workload("a", [10], [0])])], {}, 2.0, 5.0)
    assert met.worst_minutes == [] and not any("fell" in line for line in verdict([met]))


@pytest.mark.parametrize("files, names, cites", [
    (["d/AzureLLMInferenceTrace_code.csv", "d/AzureLLMInferenceTrace_conv.csv"], ["azure-code", "azure-conv"],
     ["Splitwise"]),
    (["d/AzureLLMInferenceTrace_code.csv", "e/MooncakeTrace_conversation.csv"],
     ["azure-code", "mooncake-conversation"], ["Splitwise", "Mooncake"]),
    # a user's files: named by their stems, credited to no paper, even one named like a short name
    (["day1.csv", "azure-prod.csv"], ["day1", "azure-prod"], ["--trace"]),
])
def test_a_run_names_and_cites_the_bundled_traces_by_their_files(files, names, cites):
    assert [trace_name(f) for f in files] == names
    text = citation(files)
    assert [c for c in ("Splitwise", "Mooncake", "--trace") if c in text] == cites


def test_the_default_set_cites_both_papers():
    from benchmarks.traces import request_trace_files
    text = citation(str(p) for p in request_trace_files())
    assert "Splitwise" in text and "Mooncake" in text


@pytest.mark.parametrize("within, vs_oracle, vs_bound, oracle_says, bound_says", [
    # 1.1 <= 1.2 and 1.2 <= 1.3, within the SLO: both met
    (0.995, 1.1, 1.2, "met", "met"),
    (0.995, 1.5, 2.0, "MISSED", "MISSED"),
    # 0.69x the lower bound is possible only by missing the SLO: no GPU-hour target is met then
    (0.0081, 1.0, 0.69, "MISSED (ours misses the SLO)", "MISSED (ours misses the SLO)"),
    (0.95, 1.5, 2.0, "MISSED (more GPU-hours, and ours misses the SLO)",
     "MISSED (more GPU-hours, and ours misses the SLO)"),
])
def test_a_gpu_hour_target_is_met_only_within_the_slo(within, vs_oracle, vs_bound, oracle_says, bound_says):
    row, = rows_of("t", [RunResult("ours", 300.0, [_workload("a", [10], [0])])], {}, 2.0, 5.0)
    rows = [replace(row, queue_wait_ok=within, vs_oracle=vs_oracle, vs_lower_bound=vs_bound),
            replace(row, policy="oracle"), replace(row, policy="lower_bound")]
    lines = verdict(rows)
    assert next(x for x in lines if "the oracle's" in x).endswith(f"(target <= 1.2x): {oracle_says}")
    assert next(x for x in lines if "the lower bound's" in x).endswith(f"(target <= 1.3x): {bound_says}")
