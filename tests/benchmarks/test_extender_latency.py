"""The extender micro-benchmark: what it sends, and that a small run completes."""
from __future__ import annotations

import json

from benchmarks import extender_latency as bench


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
    assert "| 20 | prioritize |" in bench.table(results)
