"""The replica policy as tables: each row a situation and the replicas it must give,
with the arithmetic in a comment. Times are plain numbers; nothing here is timed."""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest

from autoscaler.policy import (FORECAST, MAX_REPLICAS, MIN_REPLICAS, PANIC, QUEUEING, RATE_LIMIT, RECENT,
                               STABILIZATION, UNKNOWN_HOLD, Observation, ScaleState, decide, erlang_c,
                               holt_forecast, replicas_for_slo)
from autoscaler.spec import parse_spec

NOW = 1000.0
OLD = ScaleState(started_at=0.0)  # a state with more history than any window, and nothing in it

Q5 = [{"type": "queueDepth", "target": 5}]
Q5_GPU60 = Q5 + [{"type": "gpuUtilization", "target": 60}]
NO_PANIC = {"panic": {"threshold": 100}}
ACT = {"labels": {"destination_service_name": "llm"}}


def spec(signals=None, **kw):
    d = {"scaleTargetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 10,
         "signals": copy.deepcopy(Q5 if signals is None else signals)}
    d.update(copy.deepcopy(kw))
    return parse_spec(d)


def obs(ready, pending=0, warm=0, arrival=None, service=None, **signals):
    return Observation(ready=ready, pending=pending, warm=warm, signals=signals,
                       arrival_rate=arrival, service_rate=service)


# (id, spec, state, observation, now, expected replicas, expected rule)
ROWS = [
    # ---- HPA ratio and tolerance
    ("queue-up", spec(), OLD, obs(3, queueDepth=14), NOW, 9, "signal:queueDepth"),
    # 3 replicas, 42 waiting = 14/replica, target 5: ceil(3*14/5)=ceil(8.4)=9 (a panic: 9 >= 2x3, no rate limit)
    ("queue-tolerance-hold", spec(), OLD, obs(4, queueDepth=5.4), NOW, 4, "signal:queueDepth"),
    # 5.4/5 = 1.08, |1.08-1| <= 0.1: hold 4
    ("queue-past-tolerance", spec(), OLD, obs(4, queueDepth=5.6), NOW, 5, "signal:queueDepth"),
    # 5.6/5 = 1.12 > 1.1: ceil(4*5.6/5)=ceil(4.48)=5
    ("queue-down-tolerance-hold", spec(), OLD, obs(10, queueDepth=4.6), NOW, 10, "signal:queueDepth"),
    # 4.6/5 = 0.92 >= 0.9: hold 10
    ("queue-down", spec(), OLD, obs(6, queueDepth=1), NOW, 2, "signal:queueDepth"),
    # ceil(6*1/5)=ceil(1.2)=2; no history in the window; scale-down limit floor(6*(1-1.0))=0 does not bind
    ("max-over-signals", spec(Q5_GPU60), OLD, obs(3, queueDepth=5, gpuUtilization=95), NOW, 5,
     "signal:gpuUtilization"),
    # queue 5/5 = 1.0: hold 3; gpu ceil(3*95/60)=ceil(4.75)=5; max(3, 5)=5
    ("kv-cache", spec([{"type": "kvCache", "target": 0.6}]), OLD, obs(4, kvCache=0.9), NOW, 6, "signal:kvCache"),
    # ceil(4*0.9/0.6)=ceil(6.0000000000000001)=6 (float noise forgiven)
    ("promql", spec([{"type": "promql", "target": 10, "query": "x"}]), OLD, obs(2, promql=35), NOW, 7,
     "signal:promql"),
    # ceil(2*35/10)=7; 7 >= 2x2: panic, so no rate limit (it would be max(2+4, ceil(2*2))=6)

    # ---- unknown data holds on the way down, lets a known signal scale up
    ("unknown-only-signal", spec(), OLD, obs(3, queueDepth=None), NOW, 3, UNKNOWN_HOLD),
    # queue unknown: hold 3
    ("unknown-missing-key", spec(), OLD, obs(3), NOW, 3, UNKNOWN_HOLD),
    # queueDepth never observed: unknown, hold 3
    ("unknown-nan", spec(), OLD, obs(3, queueDepth=float("nan")), NOW, 3, UNKNOWN_HOLD),
    # NaN is not a value: unknown, hold 3
    ("unknown-blocks-down", spec(Q5_GPU60), OLD, obs(6, queueDepth=1, gpuUtilization=None), NOW, 6, UNKNOWN_HOLD),
    # queue says ceil(6*1/5)=2 but gpu is unknown: no scale-down on missing data, hold 6
    ("unknown-allows-up", spec(Q5_GPU60), OLD, obs(3, queueDepth=8, gpuUtilization=None), NOW, 5,
     "signal:queueDepth"),
    # queue ceil(3*8/5)=ceil(4.8)=5 > 3: up is allowed from the known signal
    ("unknown-all-min0", spec(minReplicas=0, activation=ACT), OLD, obs(0, queueDepth=None), NOW, 0, UNKNOWN_HOLD),
    # nothing ready, nothing known: hold 0

    # ---- scale-down stabilisation (300 s)
    ("stab-hold", spec(), ScaleState(started_at=0, recommendations=((800, 8),)), obs(8, queueDepth=1), NOW, 8,
     STABILIZATION),
    # ceil(8*1/5)=2, but 8 was recommended at t=800 > 1000-300: max(2, 8)=8
    ("stab-partial", spec(), ScaleState(started_at=0, recommendations=((750, 6), (900, 5))),
     obs(8, queueDepth=1), NOW, 6, STABILIZATION),
    # max(2, 6, 5)=6 within the window
    ("stab-expired", spec(), ScaleState(started_at=0, recommendations=((650, 8),)), obs(8, queueDepth=1), NOW, 2,
     "signal:queueDepth"),
    # t=650 <= 1000-300: out of the window; 2
    ("stab-fresh-state", spec(), ScaleState(), obs(8, queueDepth=1), NOW, 8, STABILIZATION),
    # a new daemon or leader has no history: no scale-down until it has seen 300 s
    ("stab-young-state", spec(), ScaleState(started_at=800), obs(8, queueDepth=1), NOW, 8, STABILIZATION),
    # 1000-800 = 200 s < 300 s of history: hold 8
    ("stab-custom-window", spec(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}}),
     ScaleState(started_at=0, recommendations=((930, 8),)), obs(8, queueDepth=1), NOW, 2, "signal:queueDepth"),
    # window 60 s: t=930 <= 940 is out; 2
    ("stab-up-window", spec(behavior={"scaleUp": {"stabilizationWindowSeconds": 60}}),
     ScaleState(started_at=0, recommendations=((970, 4),)), obs(4, queueDepth=7), NOW, 4, STABILIZATION),
    # ceil(4*7/5)=ceil(5.6)=6, but the lowest recommendation in the last 60 s is 4: hold 4

    # ---- rate limits
    ("up-default-limit", spec(behavior=NO_PANIC), OLD, obs(3, queueDepth=14), NOW, 7, RATE_LIMIT),
    # 9 wanted; limit max(3+4, ceil(3*2))=7 per 15 s
    ("up-pods-limit", spec(maxReplicas=20, behavior={"scaleUp": {"maxPodsPerPeriod": 2, "periodSeconds": 60}}), OLD,
     obs(10, queueDepth=7), NOW, 12, RATE_LIMIT),
    # ceil(10*7/5)=14 (1.4x ready: no panic); limit 10+2=12
    ("up-limit-spent", spec(maxReplicas=20, behavior={"scaleUp": {"maxPodsPerPeriod": 2, "periodSeconds": 60}}),
     ScaleState(started_at=0, events=((990, 2),)), obs(10, queueDepth=7), NOW, 10, RATE_LIMIT),
    # +2 at t=990 within 60 s: period start 10-2=8, limit 8+2=10: no more this period
    ("up-limit-old-event", spec(maxReplicas=20, behavior={"scaleUp": {"maxPodsPerPeriod": 2, "periodSeconds": 60}}),
     ScaleState(started_at=0, events=((930, 2),)), obs(10, queueDepth=7), NOW, 12, RATE_LIMIT),
    # t=930 is out of the 60 s period: start 10, limit 12
    ("down-pods-limit", spec(behavior={"scaleDown": {"maxPodsPerPeriod": 1, "stabilizationWindowSeconds": 0}}),
     OLD, obs(6, queueDepth=1), NOW, 5, RATE_LIMIT),
    # wanted 2; at most 6-1=5 this period
    ("down-percent-limit", spec(behavior={"scaleDown": {"maxPercentPerPeriod": 50}}),
     OLD, obs(6, queueDepth=1), NOW, 3, RATE_LIMIT),
    # wanted 2; floor(6*0.5)=3

    # ---- panic (KPA: 200% over 6 s, no scale-down for 60 s after)
    ("panic-skips-rate-limit", spec(), OLD, obs(3, queueDepth=14), NOW, 9, "signal:queueDepth"),
    # demand 9 >= 2x3 ready: panic, rate limit (7) skipped
    ("panic-window-average", spec(), ScaleState(started_at=0, demand=((996, 4),)), obs(3, queueDepth=14), NOW, 9,
     "signal:queueDepth"),
    # demand over the last 6 s: mean(4, 9)=6.5 >= 6: panic
    ("panic-window-average-low", spec(), ScaleState(started_at=0, demand=((996, 2),)), obs(3, queueDepth=14), NOW,
     7, RATE_LIMIT),
    # mean(2, 9)=5.5 < 6: no panic; limit max(3+4, ceil(3*2))=7
    ("panic-old-demand-ignored", spec(), ScaleState(started_at=0, demand=((990, 2),)), obs(3, queueDepth=14), NOW,
     9, "signal:queueDepth"),
    # t=990 is out of the 6 s window: mean(9)=9 >= 6: panic
    ("panic-holds-down", spec(), ScaleState(started_at=0, panic_until=1030, panic_peak=9), obs(9, queueDepth=1),
     NOW, 9, PANIC),
    # ceil(9*1/5)=2, but panicking until t=1030: no scale-down below max(9, peak 9)
    ("panic-peak-holds", spec(), ScaleState(started_at=0, panic_until=1030, panic_peak=9), obs(7, queueDepth=5),
     NOW, 9, PANIC),
    # queue at target over 7: hold 7, but the panic peak 9 (not yet applied) stays
    ("panic-over", spec(), ScaleState(started_at=0, panic_until=990, panic_peak=9), obs(9, queueDepth=1), NOW, 2,
     "signal:queueDepth"),
    # panic ended at t=990: ceil(9/5)=2

    # ---- pending replicas count as asked for
    ("pending-covers", spec(), OLD, obs(3, pending=6, queueDepth=14), NOW, 9, "signal:queueDepth"),
    # ceil(3*14/5)=9 wanted; 3 ready + 6 pending = 9 asked: 42/(9*5)=0.93 <= 1.1: hold 9, no second scale-up
    ("pending-not-enough", spec(), OLD, obs(3, pending=2, queueDepth=14), NOW, 9, "signal:queueDepth"),
    # 3 + 2 = 5 asked, 42/(5*5)=1.68: ceil(3*14/5)=9 (not 5 + 9)
    ("pending-tolerance", spec(), OLD, obs(3, pending=1, queueDepth=7), NOW, 4, "signal:queueDepth"),
    # ceil(3*7/5)=5 wanted; 21/(4*5)=1.05 <= 1.1: the pending one covers it, hold 4

    # ---- clamps
    ("max-clamp", spec(), OLD, obs(3, queueDepth=42), NOW, 10, MAX_REPLICAS),
    # ceil(3*42/5)=ceil(25.2)=26, capped by maxReplicas 10
    ("min-clamp", spec(minReplicas=2), OLD, obs(4, queueDepth=0), NOW, 2, MIN_REPLICAS),
    # ceil(4*0/5)=0, raised to minReplicas 2
    ("below-min-start", spec(minReplicas=1), OLD, obs(0), NOW, 1, MIN_REPLICAS),
    # nothing running, nothing known: hold 0, raised to minReplicas 1
    ("above-max-after-edit", spec(maxReplicas=4), OLD, obs(6, queueDepth=5), NOW, 4, MAX_REPLICAS),
    # maxReplicas lowered to 4 under 6 running: 4
]


@pytest.mark.parametrize("name,sp,state,ob,now,want,rule", ROWS, ids=[r[0] for r in ROWS])
def test_policy_table(name, sp, state, ob, now, want, rule):
    d = decide(state, ob, sp, now)
    assert (d.replicas, d.rule) == (want, rule), d.reason
    assert sp.min_replicas <= d.replicas <= sp.max_replicas
    assert d.reason


SLO = {"slo": {"queueWaitSeconds": 60}, "serviceRatePerReplica": 1.0, "coldStartSeconds": 45}
SLO_TIGHT = {"slo": {"queueWaitSeconds": 2}, "serviceRatePerReplica": 1.0}
RAMP = ScaleState(started_at=0, arrivals=((0, 1.0), (15, 2.0), (30, 3.0), (45, 4.0)))
FC_UP = {"forecast": {"scaleUp": True}}  # the forecast's own asks (by default only with no recent rate)

QUEUE_ROWS = [
    ("util-binds", spec([], maxReplicas=20, **SLO), OLD, obs(6, arrival=8), NOW, 10, QUEUEING),
    # ceil(8/(1*0.8))=10; P(wait>60s) ~ 0 at 10: 10
    ("wait-binds", spec([], **SLO_TIGHT), OLD, obs(1, arrival=1), NOW, 3, QUEUEING),
    # a=1: ceil(1/0.8)=2, P(wait>2s) = C(2,1) e^-(2-1)2 = (1/3)(0.135) = 0.045 > 0.01;
    # c=3: C(3,1)=0.0909, x e^-(3-1)2 = 0.0017 <= 0.01: 3
    ("wait-binds-slots", spec([], concurrencyPerReplica=4, **SLO_TIGHT), OLD, obs(1, arrival=1), NOW, 2, QUEUEING),
    # 4 requests at once per replica: M/M/(4c) at mu/4 per slot, a = 4*1/1 = 4 slots busy on average;
    # c=2: 8 slots, C(8,4)=0.059, x e^-(2*1-1)2 = 0.0080 <= 0.01: 2, where M/M/c (wait-binds) needs 3
    ("wait-binds-few-slots", spec([], concurrencyPerReplica=2, **SLO_TIGHT), OLD, obs(1, arrival=1), NOW, 3,
     QUEUEING),
    # 2 slots: c=2 is 4 slots with a = 2: C(4,2)=0.174, x e^-2 = 0.024 > 0.01; c=3: 6 slots, C(6,2)=0.018,
    # x e^-4 = 0.00033: 3
    ("queueing-tolerance-down", spec([], maxReplicas=20, **SLO), OLD, obs(11, arrival=7.5), NOW, 11, QUEUEING),
    # ceil(7.5/0.8)=ceil(9.375)=10 vs 11: (11-10)/11=0.09 <= 0.1: hold 11
    ("queueing-down", spec([], maxReplicas=20, **SLO), OLD, obs(14, arrival=7.5), NOW, 10, QUEUEING),
    # 10 vs 14: (14-10)/14 = 0.29 > 0.1: 10
    ("arrival-unknown", spec([], maxReplicas=20, **SLO), OLD, obs(14, arrival=None), NOW, 14, UNKNOWN_HOLD),
    # the queueing rule is on and the arrival rate is unknown: hold 14
    # a spec with an slo must give serviceRatePerReplica; decide() still holds when neither it nor a
    # measurement is known (a measured rate may take its place)
    ("service-unknown", dataclasses.replace(spec([], slo={"queueWaitSeconds": 60}, serviceRatePerReplica=1),
                                            service_rate_per_replica=None), OLD, obs(4, arrival=3), NOW, 4, UNKNOWN_HOLD),
    # no measured service rate and no serviceRatePerReplica: hold 4
    ("signal-and-queueing", spec(Q5, maxReplicas=20, **SLO), OLD, obs(6, queueDepth=4.6, arrival=8), NOW, 10,
     QUEUEING),
    # queue 4.6/5 within tolerance: hold 6; queueing ceil(8/0.8)=10: max = 10
    # ---- forecast: Holt on 1, 2, 3, 4 req/s at t=0, 15, 30, 45 and now 5 at t=60 (a line, so Holt is exact)
    ("forecast-ramp", spec([], maxReplicas=20, **SLO, **FC_UP), RAMP, obs(7, arrival=5), 60, 10, FORECAST),
    # trend (2-1)/15 = 1/15 req/s per s; in 45 s: 5 + 45/15 = 8 req/s: ceil(8/0.8)=10 (now: ceil(5/0.8)=7)
    ("forecast-steep", spec([], maxReplicas=20, **SLO, **FC_UP),
     ScaleState(started_at=0, arrivals=((0, 0.2), (15, 1.4), (30, 2.6), (45, 3.8))), obs(7, arrival=5), 60, 11,
     FORECAST),
    # a line, trend 0.08/s: 5 + 45*0.08 = 8.6 req/s: ceil(8.6/0.8)=ceil(10.75)=11
    ("forecast-small-rise", spec([], maxReplicas=20, **SLO, **FC_UP),
     ScaleState(started_at=0, arrivals=((0, 5.3), (15, 5.35), (30, 5.4), (45, 5.45))), obs(7, arrival=5.5), 60, 8,
     FORECAST),
    # a line, trend 1/300 req/s per s: 5.5 + 45/300 = 5.65 req/s: ceil(5.65/0.8)=ceil(7.06)=8 (now: 7)
    ("forecast-flat", spec([], maxReplicas=20, **SLO, **FC_UP),
     ScaleState(started_at=0, arrivals=((0, 5.0), (15, 5.0), (30, 5.0), (45, 5.0))), obs(7, arrival=5), 60, 7,
     QUEUEING),
    # no trend: forecast 5 = now: ceil(5/0.8)=7, hold 7
    ("forecast-falling-never-down", spec([], maxReplicas=20, **SLO, **FC_UP),
     ScaleState(started_at=0, arrivals=((0, 9.0), (15, 8.0), (30, 7.0), (45, 6.0))), obs(7, arrival=5), 60, 7,
     QUEUEING),
    # falling: the forecast (2 req/s) only ever asks for more; now ceil(5/0.8)=7
    ("forecast-too-few-samples", spec([], maxReplicas=20, **SLO, **FC_UP),
     ScaleState(started_at=0, arrivals=((45, 4.0),)), obs(7, arrival=5), 60, 7, QUEUEING),
    # two samples are not a trend (needs 3): ceil(5/0.8)=7
    ("forecast-disabled", spec([], maxReplicas=20, forecast={"enabled": False}, **SLO), RAMP, obs(7, arrival=5),
     60, 7, QUEUEING),
    ("forecast-asks-nothing-beside-a-recent-rate", spec([], maxReplicas=20, **SLO), RAMP,
     dataclasses.replace(obs(7, arrival=5), arrival_rate_recent=5.0), 60, 7, QUEUEING),
    # by default, with a recent rate read, the ramp's 8 req/s in 45 s (10 replicas) sizes cache pre-warming
    # only: ceil(5/0.8)=7
    ("forecast-asks-without-a-recent-rate", spec([], maxReplicas=20, **SLO), RAMP, obs(7, arrival=5), 60, 10,
     FORECAST),
    # no recent rate read (30 s scrapes): nothing else leads a burst, the forecast asks: ceil(8/0.8)=10
    ("forecast-told-not-to-ask", spec([], maxReplicas=20, forecast={"scaleUp": False}, **SLO), RAMP,
     obs(7, arrival=5), 60, 7, QUEUEING),
    # the recent rate over a 30 s window asks only past 5 + 2.326 sqrt(5 (2/30 - 1/60)) = 6.16 req/s
    ("recent-rate-within-its-noise", spec([], maxReplicas=20, **SLO), RAMP,
     dataclasses.replace(obs(7, arrival=5), arrival_rate_recent=6.0, arrival_rate_recent_window_s=30.0), 60, 7,
     QUEUEING),
    # 6.5 > 6.16: the whole recent rate, ceil(6.5/0.8)=9
    ("recent-rate-past-its-noise", spec([], maxReplicas=20, **SLO), RAMP,
     dataclasses.replace(obs(7, arrival=5), arrival_rate_recent=6.5, arrival_rate_recent_window_s=30.0), 60, 9,
     RECENT),
    # the window unknown: no margin, ceil(6/0.8)=8
    ("recent-rate-window-unknown", spec([], maxReplicas=20, **SLO), RAMP,
     dataclasses.replace(obs(7, arrival=5), arrival_rate_recent=6.0), 60, 8, RECENT),
]


@pytest.mark.parametrize("name,sp,state,ob,now,want,rule", QUEUE_ROWS, ids=[r[0] for r in QUEUE_ROWS])
def test_queueing_table(name, sp, state, ob, now, want, rule):
    d = decide(state, ob, sp, now)
    assert (d.replicas, d.rule) == (want, rule), d.reason


def test_measured_service_rate_beats_spec():
    sp = spec([], maxReplicas=20, **SLO)
    # measured mu=2: ceil(8/(2*0.8))=5; spec's mu=1 would say ceil(8/0.8)=10
    assert decide(OLD, obs(6, arrival=8, service=2), sp, NOW).replicas == 5
    assert decide(OLD, obs(6, arrival=8, service=None), sp, NOW).replicas == 10


def test_forecast_reports_rate_and_prewarm():
    d = decide(RAMP, dataclasses.replace(obs(7, arrival=5), arrival_rate_recent=5.0), spec([], maxReplicas=20, **SLO),
               60)
    assert d.forecast_arrival_rate == pytest.approx(8.0)
    # 2x the horizon: 5 + 90/15 = 11 req/s: ceil(11/0.8)=14; beside a recent rate the forecast asks
    # for nothing by default, so 14 - ceil(5/0.8) = 14 - 7 = 7 nodes worth pre-warming; with its asks, 14 - 10 = 4
    assert (d.replicas, d.prewarm) == (7, 7)
    up = decide(RAMP, obs(7, arrival=5), spec([], maxReplicas=20, **SLO, **FC_UP), 60)
    assert (up.replicas, up.prewarm) == (10, 4) and "Holt" in up.reason and "Holt" not in d.reason
    # no recent rate read, the field unset: the forecast asks, and the reason says why
    auto = decide(RAMP, obs(7, arrival=5), spec([], maxReplicas=20, **SLO), 60)
    assert (auto.replicas, auto.prewarm, auto.rule) == (10, 4, FORECAST)
    assert auto.reason.startswith("forecast (forecast.scaleUp unset: no recent rate read): Holt"), auto.reason


# ---- warm pool

@pytest.mark.parametrize("name,sp,ob,want", [
    ("promote-first", spec(warmReplicas=2), obs(3, warm=2, queueDepth=14), (9, 1, 2, 4, 0)),
    # 3 -> 9: promote the 2 warm, start 4 cold; pool = min(2, max 10 - 9) = 1
    ("promote-part", spec(warmReplicas=3, maxReplicas=20), obs(4, warm=3, queueDepth=6.5), (6, 3, 2, 0, 0)),
    # ceil(4*6.5/5)=ceil(5.2)=6: +2, both promoted from the pool of 3; pool refills to 3
    ("demote-on-down", spec(warmReplicas=2), obs(6, warm=0, queueDepth=1), (2, 2, 0, 0, 2)),
    # 6 -> 2: park 2 in the empty pool (size 2), delete 2
    ("pool-full-no-demote", spec(warmReplicas=1), obs(6, warm=1, queueDepth=1), (2, 1, 0, 0, 0)),
    # pool already holds 1: delete the 4
    ("at-max-no-pool", spec(warmReplicas=2), obs(10, warm=2, queueDepth=5), (10, 0, 0, 0, 0)),
    # at maxReplicas a warm pod can never be promoted: pool 0
])
def test_warm_pool(name, sp, ob, want):
    d = decide(OLD, ob, sp, NOW)
    assert (d.replicas, d.warm, d.promote, d.cold_start, d.demote) == want, d.reason


# ---- reasons carry the arithmetic

def test_reason_shows_arithmetic():
    d = decide(OLD, obs(3, queueDepth=42), spec(), NOW)
    assert d.reason.startswith("queueDepth 42/replica vs target 5 over 3 ready -> ceil(3*42/5)=26")
    assert "(capped by maxReplicas 10)" in d.reason
    d = decide(OLD, obs(6, queueDepth=1, gpuUtilization=None), spec(Q5_GPU60), NOW)
    assert "gpuUtilization unknown" in d.reason and "no scale-down on missing data" in d.reason
    d = decide(OLD, Observation(ready=3, signals={"queueDepth": None},
                                notes={"queueDepth": "Prometheus timed out after 5s"}), spec(), NOW)
    assert "Prometheus timed out after 5s" in d.reason
    d = decide(OLD, obs(3, warm=2, queueDepth=14), spec(warmReplicas=2), NOW)
    assert "promote 2 warm, start 4 cold" in d.reason


# ---- a run over time: burst, hold through the window, come back down

def test_burst_then_stabilised_scale_down():
    sp = spec(maxReplicas=20)
    state, replicas, seen = ScaleState(), 2, []
    load = {0: 4, 15: 60, 30: 60, 45: 20, 60: 5}  # total waiting requests; 5 from t=60 on
    for t in range(0, 1000, 15):
        waiting = load.get(t, 5)
        d = decide(state, obs(replicas, queueDepth=waiting / replicas), sp, float(t))
        state, replicas = d.state, d.replicas
        seen.append((t, replicas, d.rule))
    at = dict((t, r) for t, r, _ in seen)
    assert at[0] == 2          # 2/replica: ceil(2*2/5)=1, but a fresh state does not scale down for 300 s
    assert at[15] == 12        # 60 waiting over 2: ceil(2*30/5)=12 = 6x ready: panic, no rate limit (would be 6)
    assert at[30] == 12        # 60 over 12 = 5/replica: on target, hold
    assert all(at[t] == 12 for t in range(45, 330, 15))  # 20 then 5 waiting: 4 then 1, but 12 was
    #                            recommended at t=30, within the 300 s scale-down window
    assert at[330] == 4        # t=30 leaves the window (t > 330-300 only); highest left: 4 from t=45
    assert at[345] == 1        # 5 waiting over 4: ceil(4*1.25/5)=1
    assert at[990] == 1        # 5 waiting over 1: on target
    assert all(r >= 1 for _, r, _ in seen)


@pytest.mark.parametrize("name,forecast_at,want,rule", [
    ("forecast-within-cold-start", 970.0, 10, STABILIZATION),
    # the forecast of 10 made 30 s ago looks 45 s ahead: still held, max(7, 10)=10
    ("forecast-past-cold-start", 950.0, 7, STABILIZATION),
    # made 50 s ago, its horizon has passed: the measured 7 of t=900 holds (300 s window)
])
def test_forecast_held_one_cold_start(name, forecast_at, want, rule):
    sp = spec([], slo={"queueWaitSeconds": 60}, serviceRatePerReplica=1.0, coldStartSeconds=45)
    state = ScaleState(started_at=0.0, recommendations=((900.0, 7),), anticipated=((forecast_at, 10),))
    d = decide(state, obs(10, arrival=2.0), sp, NOW)  # 2 req/s: ceil(2/(1*0.8))=3 now
    assert (d.replicas, d.rule) == (want, rule), d.reason


@pytest.mark.parametrize("cold_start, want", [
    # 2 req/s over the minute, 12 over the last two scrapes: ceil(12/(1*0.8))=15 (10 -> 15 is within
    # HPA's max(10+4, 2x10) per 15 s); held 45 s, then the measured ceil(2/0.8)=3 (300 s of history)
    (45, [(1000.0, 15, RECENT), (1030.0, 15, STABILIZATION), (1050.0, 3, QUEUEING)]),
    # no cold start to look across: no recent rule (held 0 s it would start and stop pods per blip)
    (0, [(1000.0, 3, QUEUEING), (1030.0, 3, QUEUEING), (1050.0, 3, QUEUEING)]),
])
def test_recent_rate_asks_once_and_is_held_one_cold_start(cold_start, want):
    sp = spec([], maxReplicas=20, slo={"queueWaitSeconds": 60}, serviceRatePerReplica=1.0,
              coldStartSeconds=cold_start)
    state, ready, seen, first = OLD, 10, [], None
    for now in (1000.0, 1030.0, 1050.0):
        d = decide(state, dataclasses.replace(obs(ready, arrival=2.0), arrival_rate_recent=12.0 if now == 1000.0
                                              else None), sp, now)
        seen.append((now, d.replicas, d.rule))
        assert not d.panic  # 12 req/s is anticipated load: panic sees the measured 3
        state, ready, first = d.state, d.replicas, first or d.state
    assert seen == want
    # what each window remembers: the ask apart, the measured recommendation in the scale-down window
    assert (first.anticipated, first.recommendations) == (((1000.0, 15),) if cold_start else (), ((1000.0, 3),))


# ---- the queueing helpers

@pytest.mark.parametrize("c,a,want", [
    (1, 0.5, 0.5),        # M/M/1: P(wait) = rho
    (2, 1.0, 1 / 3),      # B(2,1) = 0.2, C = 0.2/(1-0.5*0.8) = 1/3
    (3, 1.0, 1 / 11),     # B(3,1) = 1/16, C = (1/16)/(1-(1/3)(15/16)) = 1/11
    (4, 0.0, 0.0),        # no load, no wait
    (2, 2.0, 1.0),        # saturated
])
def test_erlang_c(c, a, want):
    assert erlang_c(c, a) == pytest.approx(want)


@pytest.mark.parametrize("lam,mu,util,wait,pct,cap,want", [
    (8, 1, 0.8, None, 0.99, 100, 10),   # ceil(8/0.8)
    (8, 1, 0.8, 60, 0.99, 100, 10),     # wait bound slack at 10
    (1, 1, 0.8, 2, 0.99, 100, 3),       # see wait-binds above
    (0, 1, 0.8, 2, 0.99, 100, 0),       # nothing arrives
    (100, 1, 0.8, 1, 0.99, 50, 125),    # utilisation alone needs ceil(100/0.8)=125: said so, the caller clamps
    (1, 1, 0.8, 2, 0.99, 2, 2),         # the wait bound is missed at the cap 2 (0.045 > 0.01): the cap
])
def test_replicas_for_slo(lam, mu, util, wait, pct, cap, want):
    assert replicas_for_slo(lam, mu, util, wait, pct, cap)[0] == want
    assert replicas_for_slo(lam, mu, util, wait, pct, cap, 1)[0] == want  # B = 1 is M/M/c


@pytest.mark.parametrize("lam,mu,util,wait,pct,cap,slots,want", [
    (1, 1, 0.8, 2, 0.99, 100, 4, 2),
    # M/M/(cB), rate mu/B per slot: a = B lam/mu = 4; c=2: 8 slots, Erlang B(8,4)=0.0304 (recurrence),
    # C = 0.0304/(1-0.5*(1-0.0304)) = 0.059; P(wait>2s) = 0.059 e^-(2*1-1)*2 = 0.0080 <= 0.01: 2 (M/M/c: 3)
    (1, 1, 0.8, 2, 0.99, 100, 2, 3),
    # a = 2; c=2: 4 slots, C(4,2)=0.174, x e^-2 = 0.024 > 0.01; c=3: C(6,2)=0.018 x e^-4 = 0.00033: 3
    (8, 1, 0.9, 2, 0.99, 100, 32, 9),    # ceil(8/0.9)=9; 288 slots at a=256: P(wait>2s)=0.0042 <= 0.01: 9
    (8, 1, 0.9, 2, 0.99, 100, 1, 10),    # the same as M/M/c: P(wait>2s)=0.0075 only at 10
    (2.5, 1, 0.9, 2, 0.99, 100, 32, 4),  # ceil(2.5/0.9)=3, but 96 slots at a=80 miss the bound; 128 slots: 4
    (2.5, 1, 0.9, 2, 0.99, 100, 1, 5),   # M/M/c: 5
    (1, 1, 1.0, 2, 0.99, 2, 2, 2),
    # ceil(1/1)=1: 2 slots at a=2 are saturated (P=1); c=2: 0.024 > 0.01; the cap 2 misses it: the cap
])
def test_replicas_for_slo_slots(lam, mu, util, wait, pct, cap, slots, want):
    c, text = replicas_for_slo(lam, mu, util, wait, pct, cap, slots)
    assert c == want, text
    assert ("M/M/cB" in text) == (slots > 1)


def test_reason_shows_slots_and_forecast():
    d = decide(OLD, obs(1, arrival=1), spec([], concurrencyPerReplica=4, **SLO_TIGHT), NOW)
    assert "P(wait>2s) (M/M/cB, B=4)=0.008 <= 0.01" in d.reason, d.reason
    d = decide(ScaleState(started_at=0, arrivals=((0, 0.2), (15, 1.4), (30, 2.6), (45, 3.8))), obs(7, arrival=5),
               spec([], maxReplicas=20, **SLO, **FC_UP), 60)
    assert "-> 8.6 req/s in 45s: ceil(8.6/(1*0.8))=11" in d.reason, d.reason
    assert d.forecast_arrival_rate == pytest.approx(8.6)


def test_holt_exact_on_a_line_and_irregular_steps():
    t = np.array([0.0, 10.0, 15.0, 40.0])
    x = 2.0 + 0.5 * t
    level, trend, f = holt_forecast(t, x, 0.5, 0.3, 100.0)
    assert (level, trend) == (pytest.approx(22.0), pytest.approx(0.5))
    assert f == pytest.approx(52.0)  # 22 + 0.5 * 60


def test_state_is_bounded():
    sp = spec(**SLO)
    state = ScaleState()
    for t in range(0, 5000, 5):
        state = decide(state, obs(3, queueDepth=5, arrival=2), sp, float(t)).state
    # arrivals: max(600, 8 x 45) s of samples 5 s apart; recommendations: the 300 s window
    assert len(state.recommendations) <= 61 and len(state.arrivals) <= 120 and len(state.demand) <= 2
    assert math.isfinite(state.started_at)
