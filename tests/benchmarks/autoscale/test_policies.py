"""The baselines' arithmetic (HPA's replica calculator and behavior, KEDA's AverageValue,
the oracle's bins), the cold-start tiers and the pool's cache, row by row."""
from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.autoscale import policies as pol
from benchmarks.autoscale.service import ColdStart, replicas_needed
from benchmarks.autoscale.sim import GpuPool
from scheduler.core.scoring import GB


@pytest.mark.parametrize("metrics, ready, unready, current, target, want", [
    # all ready, all reporting: ceil(mean/target * n); 90/70 = 1.29 -> ceil(1.29*2) = 3
    ({"a": 90, "b": 90}, {"a", "b"}, set(), 2, 70, 3),
    # within tolerance: 75/70 = 1.07 -> hold 2
    ({"a": 75, "b": 75}, {"a", "b"}, set(), 2, 70, 2),
    # scale-down: 35/70 = 0.5 -> ceil(0.5*4) = 2
    ({"a": 35, "b": 35, "c": 35, "d": 35}, {"a", "b", "c", "d"}, set(), 4, 70, 2),
    # a not-ready pod counts 0 on a scale-up: (100+100+0)/3 = 66.7 -> ratio 0.95, within tolerance: hold 3
    ({"a": 100, "b": 100}, {"a", "b"}, {"c"}, 3, 70, 3),
    # 100/70 = 1.43 over 1 ready with 1 unready at 0: 50/70 = 0.71 reverses direction: hold 2
    ({"a": 100}, {"a"}, {"b"}, 2, 70, 2),
    # a ready pod without a sample counts as the target on a scale-down: (20+70)/2/70 = 0.64 -> ceil(1.29) = 2
    ({"a": 20}, {"a", "b"}, set(), 2, 70, 2),
    # ... and 0 on a scale-up: (140+0)/2/70 = 1.0 -> hold 2
    ({"a": 140}, {"a", "b"}, set(), 2, 70, 2),
    # no ready pod reports: the HPA changes nothing
    ({}, {"a"}, set(), 1, 70, None),
])
def test_hpa_replica_calculator(metrics, ready, unready, current, target, want):
    assert pol.plain_metric_replicas(metrics, ready, unready, current, target) == want


@pytest.mark.parametrize("total, status, target, want", [
    (18, 1, 5, 4),  # ceil(18/5)
    (10.5, 2, 5, 2),  # 10.5/(5*2) = 1.05 within tolerance: hold
    (0, 3, 5, 0),  # an empty queue asks for 0 (minReplicas clamps later)
    (51, 10, 5, 10),  # 51/50 = 1.02: hold
])
def test_keda_external_average_value(total, status, target, want):
    assert pol.external_average_replicas(total, status, target) == want


def test_hpa_behavior_rate_limit_and_stabilisation():
    b = pol.HpaBehavior(min_replicas=1, max_replicas=50)
    # scale-up limited to max(2 + 4, 2 * 2) = 6 per 15 s
    assert b.normalize(20, 2, 0.0) == 6
    # 10 s later the period started at 6 - 4 = 2 replicas: still max(6, 4) = 6
    assert b.normalize(20, 6, 10.0) == 6
    # 20 s in, the period starts at 6: max(10, 12) = 12
    assert b.normalize(20, 6, 20.0) == 12
    # proposals fall to 3, but the highest of the last 300 s (20) holds 12 until t > 300
    assert b.normalize(3, 12, 100.0) == 12
    assert b.normalize(3, 12, 299.0) == 12
    assert b.normalize(3, 12, 321.0) == 3  # 0, 10 and 20 s are out of the window; the max is 3
    assert b.normalize(0, 3, 400.0) == 3  # the 3s of 299 and 321 s are still in the window
    assert b.normalize(0, 3, 700.0) == 1  # only 0s in (400, 700]: minReplicas


@pytest.mark.parametrize("arrivals, mu, u, want", [
    # 5 s bins: 10 arrivals in the first -> 2 req/s / (1 * 1) = 2; none in the second -> at least 1
    ([0.1 * k for k in range(10)] + [12.0], 1.0, 1.0, [2, 1, 1, 1]),
    # 2 req/s / (0.5 * 0.8) = 5
    ([0.5 * k for k in range(10)], 0.5, 0.8, [5, 1]),
])
def test_oracle_need_per_bin(arrivals, mu, u, want):
    got = pol.oracle_need(np.array(arrivals), mu, u, until=max(arrivals))
    assert list(got[:len(want)]) == want


def test_oracle_looks_ahead_by_its_cold_start():
    o = pol.Oracle("oracle", np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 7, 1]), max_replicas=5)
    # bins of 5 s: the 7 is in bin 10 (50..55 s); it is wanted from any window that reaches 50 s
    assert o.want(0.0, 49.9) == 1
    assert o.want(0.0, 50.0) == 5  # capped by maxReplicas
    assert o.want(55.0, 70.0) == 1


@pytest.mark.parametrize("tier, seconds", [
    ("gpu", 1.0),  # a warm replica's promotion
    ("host-memory", 15.0 + 16 / 20),  # container start + 16 GB / 20 GB/s
    ("disk", 15.0 + 16 / 2),
    ("remote", 15.0 + 16 / 0.5),
])
def test_cold_start_by_tier(tier, seconds):
    assert ColdStart(model_bytes=16 * GB).seconds(tier) == pytest.approx(seconds)


def test_pool_gives_the_freshest_copy_first():
    cold = ColdStart(host_cache_s=600.0)
    pool = GpuPool(capacity=3, cold=cold)
    assert pool.take("m", 1, 0.0) == "remote"  # no node ever had it
    pool.give_back("m", 1, 10.0, cached=True)
    assert pool.next_tier("m", 500.0) == "host-memory"  # freed 490 s ago: page cache
    assert pool.next_tier("m", 700.0) == "disk"  # 690 s > 600 s: only the disk copy is left
    assert pool.take("m", 1, 100.0) == "host-memory"
    pool.prefetch("m", 1, 100.0)  # ready at 100 + 16 GB / 0.5 GB/s = 132 s
    assert pool.take("m", 1, 120.0) == "remote"  # the prefetch is not done yet
    assert pool.take("m", 1, 140.0) == "disk"
    assert not pool.room(1)  # 3 of 3 GPUs held


@pytest.mark.parametrize("rate, mu, u, want", [(0.0, 2.0, 0.8, 1), (3.2, 2.0, 0.8, 2), (3.3, 2.0, 0.8, 3)])
def test_replicas_needed(rate, mu, u, want):
    assert replicas_needed(rate, mu, u) == want  # ceil(rate / (mu * u)), at least 1


def test_ablations_switch_one_thing_off_through_the_spec():
    from autoscaler.spec import parse_spec

    base = pol.ours_spec("m", max_replicas=8, mu=2.0, cold_start_s=47.0, queue_wait_s=2.0, queue_target=5.0)
    specs = {k: parse_spec(pol.merge_spec(base, v[0])) for k, v in pol.ABLATIONS.items() if k != "ours-batch-slots"}
    assert specs["ours"].warm_replicas == 1 and specs["ours-no-warm"].warm_replicas == 0
    assert specs["ours"].forecast.enabled and not specs["ours-no-forecast"].forecast.enabled
    assert specs["ours"].slo is not None and specs["ours-no-queueing"].slo is None
    assert specs["ours-no-panic"].behavior.panic.threshold == 1e9
    assert pol.ABLATIONS["ours-no-prewarm"][1] is False and specs["ours-no-prewarm"] == specs["ours"]
    assert math.isclose(specs["ours"].service_rate_per_replica, 2.0)


def test_ours_spec_slots_and_scale_down():
    from autoscaler.spec import parse_spec

    kw = dict(max_replicas=8, mu=2.0, cold_start_s=47.0, queue_wait_s=2.0, queue_target=5.0)
    # an explicit override wins (here the simulated server's batch size)
    s = parse_spec(pol.ours_spec("m", overrides={"concurrencyPerReplica": 32}, **kw))
    assert s.concurrency_per_replica == 32
    ours = parse_spec(pol.ours_spec("m", **kw))
    assert ours.concurrency_per_replica == 1  # no load test's concurrency given: M/M/c
    assert parse_spec(pol.ours_spec("m", concurrency=15, **kw)).concurrency_per_replica == 15
    # the two ends as variants: the server's batch (the bench substitutes it), one server
    assert pol.ABLATIONS["ours-batch-slots"][0] == {"concurrencyPerReplica": pol.SERVER_BATCH}
    assert parse_spec(pol.merge_spec(pol.ours_spec("m", concurrency=15, **kw),
                                     pol.ABLATIONS["ours-mmc"][0])).concurrency_per_replica == 1
    # the CRD's defaults, as a user gets them: HPA's scale-down (100% per 15 s), utilisation 0.8
    assert (ours.behavior.scale_down.max_percent, ours.behavior.scale_down.period_s) == (100.0, 15.0)
    assert ours.slo is not None and ours.slo.target_utilization == 0.8
    assert ours.behavior.scale_down.stabilization_window_s == 300


@pytest.mark.parametrize("now, want", [(0.0, 3), (599.0, 3), (600.0, 7), (1199.0, 7), (1200.0, 2), (9999.0, 2)])
def test_static_prev_window_counts_by_window(now, want):
    s = pol.StaticSchedule("static-prev-window", [3, 7, 2], 600.0)
    assert s.count_at(now) == want and s.initial() == (3, 0) and s.interval_s == 600.0


class _Queue:
    """What Keda reads of a workload: the summed queue, the pods, the Deployment."""

    def __init__(self):
        self.queue, self.dep_replicas = 0.0, 1

    def total_queue(self):
        return self.queue

    def live(self):
        return [None] * self.dep_replicas


def test_keda_queries_the_queue_at_every_hpa_sync():
    k = pol.Keda("keda-queue", 5.0, 1, 32, 1)
    wl = _Queue()
    assert k.interval_s == 15.0
    wl.queue = 20.0
    assert k.act(15.0, wl).replicas == 4  # ceil(20 / 5), within max(1 + 4, 2)
    wl.dep_replicas, wl.queue = 4, 40.0
    assert k.act(30.0, wl).replicas == 8  # the next sync sees the new queue (not a 30 s-old poll)


def test_read_cold_starts(tmp_path):
    from benchmarks.autoscale.service import ColdStartError, read_cold_starts

    p = tmp_path / "c.csv"
    p.write_text("load_seconds,node\n31.5,a\n\n48,b\n")
    assert read_cold_starts(str(p)) == (31.5, 48.0)
    for text, msg in (("s\n12\nabc\n", "row 3: 'abc' is not a number of seconds"),
                      ("-3\n", "row 1: load time -3 must be a finite number > 0"),
                      ("nan\n", "row 1: load time nan must be a finite number > 0"),
                      ("seconds\n", "no load times")):
        p.write_text(text)
        with pytest.raises(ColdStartError, match=msg):
            read_cold_starts(str(p))
    with pytest.raises(ColdStartError, match="cannot read"):
        read_cold_starts(str(tmp_path / "none.csv"))


def _d(replicas, rule, **recs):
    from types import SimpleNamespace as NS

    return NS(replicas=replicas, rule=rule, recommendations=[NS(rule=k.replace("_", ":"), replicas=v)
                                                             for k, v in recs.items()])


def test_decide_tally_splits_ours_replica_seconds():
    t = pol.DecideTally()
    t.add(_d(5, "forecast", queueing=3, forecast=5), 5.0)  # forecast 2 above queueing, for 5 s: 10
    t.add(_d(8, "stabilization", queueing=3, signal_q=4), 5.0)  # signal 1 above, held 8 - 4 = 4 above: 20
    t.add(_d(6, "rateLimit", queueing=10), 5.0)  # kept 4 below the queueing rule: 20
    assert (t.target, t.queueing, t.forecast_above, t.signals_above) == (95.0, 80.0, 10.0, 5.0)
    # the recent rate's ask is held as the forecast's: it counts with it, the larger of the two
    r = pol.DecideTally()
    r.add(_d(7, "recentRate", queueing=3, forecast=5, recentRate=7), 5.0)  # max(5, 7) - 3 = 4 above, for 5 s: 20
    assert (r.target, r.queueing, r.forecast_above) == (35.0, 15.0, 20.0)
    assert t.held_above == {"stabilization": 20.0} and t.below == {"rateLimit": 20.0}
    assert t.merged(t).by_rule == {"forecast": 50.0, "stabilization": 80.0, "rateLimit": 60.0}
    assert t.hours()["held_above_recommendations"] == {"stabilization": round(20 / 3600, 3)}
