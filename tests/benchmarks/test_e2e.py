"""`gpusched bench e2e` at a tiny size on its own small test bed (the session cluster keeps
its own gpusched scheduler running, which would race a second one for the same pods)."""
from __future__ import annotations

import pytest

from benchmarks import e2e


@pytest.mark.integration
def test_e2e_schedules_every_pod_with_both_schedulers(tmp_path):
    result = e2e.run(nodes=20, pods=40, workers=8, timeout=120, state_dir=tmp_path / "state")
    rows = {r["scheduler"]: r for r in result["rows"]}
    assert set(rows) == {"default-scheduler", "gpusched"}
    assert all(r["scheduled"] == 40 for r in rows.values())
    calls = {v["verb"]: v["calls"] for v in result["extender"]}
    assert calls["filter"] >= 40 and calls["bind"] >= 40
    text = e2e.table(result)
    assert "| default-scheduler | 40 |" in text and "| gpusched | 40 |" in text


def test_quantile_from_cumulative_buckets():
    before = ('# TYPE gpusched_extender_request_seconds histogram\n'
              'gpusched_extender_request_seconds_bucket{le="0.001",verb="filter"} 1\n'
              'gpusched_extender_request_seconds_bucket{le="0.01",verb="filter"} 1\n'
              'gpusched_extender_request_seconds_bucket{le="+Inf",verb="filter"} 1\n')
    after = before.replace('"0.001",verb="filter"} 1', '"0.001",verb="filter"} 51') \
                  .replace('"0.01",verb="filter"} 1', '"0.01",verb="filter"} 101') \
                  .replace('"+Inf",verb="filter"} 1', '"+Inf",verb="filter"} 101')
    lat = {v.verb: v for v in e2e.latencies(before, after)}
    assert lat["filter"].calls == 100
    assert lat["filter"].p50_ms == pytest.approx(1.0)
    assert lat["filter"].p99_ms == pytest.approx(9.82)
    assert lat["bind"].calls == 0 and lat["bind"].p50_ms is None
