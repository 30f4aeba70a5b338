"""Scale to zero in the bench: the --models split, ours with minReplicas 0 and KEDA
with minReplicaCount 0 in the simulator, and requests that wait a wake-up counted."""
from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from benchmarks.autoscale import policies as pol
from benchmarks.autoscale.service import service_model
from benchmarks.autoscale.sim import SimConfig, WorkloadInput, simulate
from benchmarks.autoscale.split import model_name, split_models
from benchmarks.fleet.model import TraceRow
from scheduler.cli import main

SVC = service_model("h100")


def rows(times):
    return [TraceRow(float(t), 100, 20) for t in times]


def test_split_is_deterministic_zipf_with_sessions():
    trace = rows(np.arange(0, 3600, 0.5))
    a, b = split_models(trace, 8, 120, seed=3), split_models(trace, 8, 120, seed=3)
    assert [r.model for r in a] == [r.model for r in b]
    assert [r.t for r in a] == [r.t for r in trace]  # only the model changes
    blocks = {m: {int(r.t // 120) for r in a if r.model == m} for m in {r.model for r in a}}
    assert len(blocks[model_name(0)]) == 30  # model 0 in use in every block
    # model 7 in use about 1/8 of the 30 blocks (idle most of the time), model 0 the most requests
    assert len(blocks.get(model_name(7), ())) <= 10
    assert Counter(r.model for r in a).most_common(1)[0][0] == model_name(0)


@pytest.mark.parametrize("k, block, model, message", [
    (0, 120, "", "--models must be at least 1, got 0"),
    (4, 0, "", "--model-block must be > 0, got 0"),
    (4, 120, "llama", "has one (drop --models)"),
])
def test_split_bad_input(k, block, model, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        split_models([TraceRow(0.0, 1, 1, model=model)], k, block)


def _ours_zero(idle_s=None, wake_path=False):
    over = {"minReplicas": 0, "warmReplicas": 0, "activation": {"labels": {"destination_service_name": "m"}}}
    if idle_s is not None:
        over["scaleToZeroAfterSeconds"] = idle_s
    spec = pol.ours_spec("m", max_replicas=4, mu=5.0, cold_start_s=47.0, queue_wait_s=2.0, queue_target=5.0,
                         overrides=over)
    return pol.Ours("ours-zero", spec, False, 1, wake_path=wake_path)


def _sim(ctl, trace):
    return simulate([WorkloadInput("m", trace, SVC, 5.0)], lambda i: ctl, SimConfig(drain_after_s=120.0))


def test_ours_sleeps_through_a_gap_and_wakes_on_the_first_request():
    # a request every 2 s for 100 s, a 1,500 s gap, then 50 more
    trace = rows(list(range(0, 100, 2)) + list(range(1600, 1700, 2)))
    w = _sim(_ours_zero(), trace).workloads[0]
    # the request at 98 s stays in the gateway's 1-minute count (15 s scrapes) until ~160 s;
    # idle window max(300, 5 x 47) = 300 s after that: zero from ~460 s
    (start, end), = w.zero_spans
    assert 455 <= start <= 480
    # woken by the request at 1600 s: seen at the next scrape, then a cold start (from the node's
    # disk: the GPU given back at ~460 s kept the weights there) of at most 47 s (remote)
    assert 1600 < end <= 1600 + 15 + 47
    cold = w.from_zero
    assert cold.sum() == np.sum((np.array([r.t for r in trace]) >= start) & (np.array([r.t for r in trace]) < end))
    # the first request waits the wake-up, the ones after it less; every other one is served at once
    assert w.queue_wait[cold][0] > 15 and np.all(w.queue_wait[~cold] <= 2.0)
    assert w.timeline[-1][3] >= 1  # serving again at the end


def test_the_wake_path_wakes_at_the_first_arrival():
    # as above, with the gateway's fallback calling the activation endpoint: the request at 1601 s
    # finds no Ready pod and wakes the model in that second; no scrape to wait for
    trace = rows(list(range(0, 100, 2)) + [1601 + k for k in range(0, 100, 2)])
    scrape = _sim(_ours_zero(), trace).workloads[0]
    wake = _sim(_ours_zero(wake_path=True), trace).workloads[0]
    (_, end_scrape), = scrape.zero_spans
    (start, end), = wake.zero_spans
    assert 455 <= start <= 480  # asleep as before: a wake changes nothing while no request comes
    # from the disk the GPU given back kept the weights on: 15 s start + 16 GB / 2 GB/s = 23 s, after
    # the wake at 1601 s, decided at 1602 s (the first whole second after it)
    assert end == 1602 + 23, end
    assert end_scrape == 1605 + 23  # the scrape at 1605 s saw the request, the tick at 1605 s acted
    assert wake.queue_wait[wake.from_zero][0] == pytest.approx(1602 + 23 - 1601)
    assert wake.from_zero.sum() < scrape.from_zero.sum()


def test_keda_zero_cools_down_then_activates():
    trace = rows(list(range(0, 100, 2)) + list(range(1600, 1700, 2)))
    ctl = pol.KedaZero("keda-zero", 5.0, 4, 1)
    w = _sim(ctl, trace).workloads[0]
    (start, end), = w.zero_spans
    # active until the last request is out of the 1-minute count (~160 s), then cooldownPeriod 300 s
    assert 400 <= start <= 520
    assert 1600 < end <= 1600 + 30 + 47 + 15  # one 30 s poll, a cold start


def test_bench_with_models_reports_wakeups(tmp_path, capsys):
    p = tmp_path / "t.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 + "".join(f"{t},200,50\n" for t in list(range(0, 600, 3)) + list(range(1500, 1800, 3))))
    rc = main(["bench", "autoscale", "--trace", str(p), "--out", str(tmp_path / "o"), "--models", "3",
               "--model-block", "300", "--policies", "ours", "ours-zero", "keda-zero", "oracle"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads((tmp_path / "o" / "autoscale.json").read_text())
    rows_ = {r["policy"]: r for r in d["rows"]}
    assert d["params"]["models_split"]["models"] == 3 and d["params"]["traces"][0]["models"] >= 2
    assert rows_["ours"]["from_zero"] == 0 and rows_["ours-zero"]["from_zero"] > 0
    assert rows_["ours-zero"]["gpu_hours"] < rows_["ours"]["gpu_hours"]  # the gap is slept through
    assert "from zero" in out


def test_host_warm_tier_serves_every_model_from_host_memory():
    from benchmarks.autoscale.service import ColdStart
    from benchmarks.autoscale.sim import GpuPool
    cold = ColdStart()
    plain, warm = GpuPool(None, cold), GpuPool(None, cold, host_warm=True)
    # a model never loaded on the pool: remote (15 + 16 GB / 0.5 GB/s = 47 s) vs host memory (15 + 16/20 = 15.8 s)
    assert (plain.take("a", 1, 0.0), warm.take("a", 1, 0.0)) == ("remote", "host-memory")
    # freed 700 s ago (> host_cache_s 600): the node's disk, unless every model is kept in host memory
    plain.give_back("a", 1, 0.0, cached=True)
    warm.give_back("a", 1, 0.0, cached=True)
    assert (plain.next_tier("a", 700.0), warm.next_tier("a", 700.0)) == ("disk", "host-memory")
    assert warm.load_s(warm.take("a", 1, 700.0)) == pytest.approx(15.8)
