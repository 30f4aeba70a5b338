"""The extender micro-benchmark: what it sends, and that a small run completes."""
from __future__ import annotations

import json

import pytest

from benchmarks.extender import latency as bench
from scheduler.cli import main


def test_filter_lists_come_in_a_new_order_each_call_as_kube_schedulers_do():
    first, second = (json.loads(bench.request_body(100, i))["NodeNames"] for i in (0, 1))
    assert sorted(first) == sorted(second) == [f"node-{k:05d}" for k in range(100)]
    assert first != second
    assert bench.request_body(100, 0) == bench.request_body(100, 0)  # the same call is the same bytes
    # prioritize is sent the list filter answered, compact as Go writes it
    assert bench.request_body(3, 0, ["b", "a"]).endswith(b'"NodeNames":["b","a"]}')


def test_a_small_run_measures_both_servers_and_both_verbs():
    results = bench.run([20], calls=5, seed=1)
    assert {(r.server, r.verb) for r in results} == {
        (s, v) for s in ("gpusched", "baseline") for v in ("filter", "prioritize")}
    assert all(0 < r.p50_ms <= r.p99_ms for r in results)
    assert "| best | 20 | prioritize |" in bench.table(results)


def test_trace_shapes_map_the_alibaba_mix_onto_80_gib_gpus():
    shapes = bench.trace_shapes()
    assert (1, "") in shapes and (8, "") in shapes  # whole GPUs
    assert (0, "64Gi") in shapes  # gpu_milli 800 of an 80 GiB GPU: 64 GiB
    assert all((g > 0) != bool(m) for g, m in shapes)  # a whole-GPU pod or a share, never both


def test_a_realistic_pod_asks_for_whole_gpus_as_a_resource_and_a_share_as_an_annotation():
    whole = json.loads(bench.request_body(3, 0, shape=(2, "")))["Pod"]
    share = json.loads(bench.request_body(3, 0, shape=(0, "10Gi")))["Pod"]
    assert whole["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert "gpusched.io/gpu-memory" not in whole["metadata"]["annotations"]
    assert share["metadata"]["annotations"]["gpusched.io/gpu-memory"] == "10Gi"


def test_a_small_realistic_run_changes_the_cluster_while_it_measures():
    results = bench.run([20], calls=5, seed=1, modes=("realistic",))
    assert {r.mode for r in results} == {"realistic"}
    assert "| realistic | 20 | filter |" in bench.table(results)


@pytest.mark.parametrize("args, error", [
    (["--nodes", "0"], "argument --nodes: must be at least 1, got 0"),
    (["--nodes", "100", "-5"], "argument --nodes: must be at least 1, got -5"),
    (["--nodes", "many"], "argument --nodes: must be a whole number, got 'many'"),
    (["--calls", "0"], "argument --calls: must be at least 1, got 0"),
])
def test_counts_that_would_measure_nothing_are_refused_in_one_line(args, error, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "extender", *args])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"gpusched bench extender: error: {error}"
