"""Each phase of ``decide`` on its own, as tables: a row is the phase's input and what it
must give, with the arithmetic in a comment. test_policy.py checks the phases together."""
from __future__ import annotations

import copy
import dataclasses

import pytest

from autoscaler.policy import (FORECAST, HOLD, MAX_REPLICAS, MIN_REPLICAS, PANIC, QUEUEING, RATE_LIMIT, RECENT,
                               STABILIZATION, UNKNOWN_HOLD, Observation, Panic, Recommendation, Rules, ScaleState,
                               Verdict, clamp, forecast, forecast_asks, held_recommendations, next_state, panic_floor,
                               noise_z, panic_mode, pick_largest, queue_inputs, queueing_and_forecast,
                               queueing_rule, rate_limit, recent_rule, signal_ratios, split_recommendations, stabilise, warm_pool,
                               warm_size)
from autoscaler.spec import parse_spec

NOW = 1000.0
Q5 = {"type": "queueDepth", "target": 5}
GPU60 = {"type": "gpuUtilization", "target": 60}
SLO = {"slo": {"queueWaitSeconds": 60}, "serviceRatePerReplica": 1.0, "coldStartSeconds": 45}


def spec(signals=(Q5,), **kw):
    d = {"scaleTargetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 10, "signals": list(signals)}
    d.update(copy.deepcopy(kw))
    return parse_spec(d)


def obs(ready, pending=0, warm=0, arrival=None, service=None, recent=None, reporting=None, **signals):
    return Observation(ready=ready, pending=pending, warm=warm, signals=signals, arrival_rate=arrival,
                       service_rate=service, arrival_rate_recent=recent,
                       reporting={} if reporting is None else {"queueDepth": reporting})


def rec(rule, replicas, demand=None):
    return Recommendation(rule, replicas, f"{rule} says {replicas}", demand)


V = Verdict  # (replicas, rule, reason so far)


# ---------------------------------------------------------------- 1. signal ratios

@pytest.mark.parametrize("name,sp,ob,want_recs,want_unknown,skipped", [
    ("up", spec(), obs(3, queueDepth=14), [("signal:queueDepth", 9, None)], (), 0),
    # ceil(3*14/5)=ceil(8.4)=9
    ("within-tolerance", spec(), obs(4, queueDepth=5.4), [("signal:queueDepth", 4, 5)], (), 0),
    # 5.4/5=1.08, |1.08-1| <= 0.1: hold 4; the need ceil(4*5.4/5)=ceil(4.32)=5 is kept for panic
    ("pending-covers", spec(), obs(3, pending=6, queueDepth=14), [("signal:queueDepth", 9, 9)], (), 0),
    # 42/(9*5)=0.93 <= 1.1 over 3 ready + 6 pending: hold 9, need ceil(3*14/5)=9
    ("two-signals", spec([Q5, GPU60]), obs(3, queueDepth=1, gpuUtilization=95),
     [("signal:queueDepth", 1, None), ("signal:gpuUtilization", 5, None)], (), 0),
    # ceil(3*1/5)=1 and ceil(3*95/60)=ceil(4.75)=5, in the spec's order
    ("unknown-none", spec(), obs(3, queueDepth=None), [], ("queueDepth",), 0),
    ("unknown-missing", spec(), obs(3), [], ("queueDepth",), 0),
    ("unknown-nan", spec(), obs(3, queueDepth=float("nan")), [], ("queueDepth",), 0),
    ("unknown-negative", spec(), obs(3, queueDepth=-1.0), [], ("queueDepth",), 0),
    ("tolerance-edge", spec(), obs(2, pending=3, queueDepth=5.5), [("signal:queueDepth", 5, 3)], (), 0),
    # 5.5/5 = 1.1 is 1.1000000000000001 in floats, past the tolerance: a scale-up, and
    # 2 x 5.5/(5 x 5) = 0.44 over 2 ready + 3 pending covers it: hold 5, need ceil(2.2) = 3
    ("no-ready", spec(), obs(0, pending=2, queueDepth=4), [], (), 1),
    # known, but 0 ready replicas give no ratio: skipped, not unknown
])
def test_signal_ratios(name, sp, ob, want_recs, want_unknown, skipped):
    r = signal_ratios(sp, ob)
    assert [(x.rule, x.replicas, x.demand) for x in r.recs] == want_recs
    assert (r.unknown, len(r.notes), len(r.skipped)) == (want_unknown, len(want_unknown), skipped)


@pytest.mark.parametrize("name,ob,want", [
    ("not-scraped-up", obs(5, queueDepth=14, reporting=3), (9, None)),
    # 3 report 14: 42 waiting; the 2 not scraped yet at 0: 42/5 = 8.4 -> ceil(5 x 8.4/5) = 9 (14 for all 5: 14)
    ("not-scraped-covered", obs(5, pending=4, queueDepth=14, reporting=3), (9, 9)),
    # 8.4 as above; 5 x 8.4/(9 x 5) = 0.93 <= 1.1 over 5 ready + 4 pending: hold 9, need 9
    ("not-scraped-down", obs(4, queueDepth=1, reporting=2), (3, None)),
    # 1 < 5: the 2 without a sample at the target 5: (2 x 1 + 2 x 5)/4 = 3 -> ceil(4 x 3/5) = ceil(2.4) = 3 (not 1)
    ("not-scraped-turns", obs(4, queueDepth=6, reporting=1), (4, 2)),
    # 6 > 5, but (6 + 3 x 0)/4 = 1.5 < 5: the direction turns, HPA holds 4; need ceil(4 x 1.5/5) = 2
    ("not-scraped-at-target", obs(4, queueDepth=5, reporting=2), (4, 4)),
    # 5 = 5: neither direction, the 2 without a sample at 5 too: 5/5 = 1 within tolerance, hold 4, need 4
    ("all-report", obs(3, queueDepth=14, reporting=3), (9, None)),
    # every ready replica reports: the plain ratio, ceil(3 x 14/5) = 9
    ("count-zero", obs(3, queueDepth=14, reporting=0), (9, None)),
    ("count-above-ready", obs(3, queueDepth=14, reporting=7), (9, None)),
    # a count no reading can give (an average over 0 pods, or more pods than are ready) is
    # not believed: the plain ratio again, ceil(3 x 14/5) = 9
])
def test_pods_without_a_sample_count_as_hpa_counts_them(name, ob, want):
    r = signal_ratios(spec(), ob)
    assert [(x.replicas, x.demand) for x in r.recs] == [want]
    assert ("as HPA counts pods without a sample" in r.recs[0].reason) == name.startswith("not-scraped")


SHORT = {"slo": {"queueWaitSeconds": 2}, "serviceRatePerReplica": 0.7, "coldStartSeconds": 45}


@pytest.mark.parametrize("name,sp,ob,want", [
    # 2 s x 0.7 req/s = 1.4 waiting per replica is what the SLO allows; 4 x 3/1.4 = 8.57 -> 9
    ("capped", spec(**SHORT), obs(4, queueDepth=3), ("signal:queueDepth", 9)),
    # without the cap: ceil(4 x 3/5) = ceil(2.4) = 3
    ("no-slo", spec(), obs(4, queueDepth=3), ("signal:queueDepth", 3)),
    # a measured rate beats the spec's: 2 s x 5 = 10 >= 5, the target stands: ceil(4 x 8/5) = 7
    ("measured-rate-above", spec(**SHORT), obs(4, service=5.0, queueDepth=8), ("signal:queueDepth", 7)),
    # a 60 s wait bound allows 42 waiting: 5 stands; 3/5 = 0.6 -> ceil(2.4) = 3
    ("long-slo", spec(**dict(SHORT, slo={"queueWaitSeconds": 60})), obs(4, queueDepth=3), ("signal:queueDepth", 3)),
    # other signals are never capped: ceil(4 x 90/60) = 6
    ("gpu-not-capped", spec([GPU60], **SHORT), obs(4, gpuUtilization=90), ("signal:gpuUtilization", 6)),
])
def test_queue_target_is_what_the_slo_allows(name, sp, ob, want):
    r = signal_ratios(sp, ob)
    assert [(x.rule, x.replicas) for x in r.recs] == [want]
    assert ("capped at 2s x mu 0.7" in r.recs[0].reason) == (name == "capped")


def test_signal_ratios_say_why_unknown():
    ob = Observation(ready=3, signals={"queueDepth": None}, notes={"queueDepth": "Prometheus timed out"})
    assert signal_ratios(spec(), ob).notes == ("queueDepth unknown (Prometheus timed out)",)
    assert signal_ratios(spec(), obs(3, queueDepth=float("inf"))).notes == ("queueDepth unknown (invalid value inf)",)


# ---------------------------------------------------------------- 2. queueing and forecast

@pytest.mark.parametrize("name,ob,service_spec,want", [
    ("both-known", obs(2, arrival=8, service=2), 1.0, (8, 2, ())),  # measured mu 2 beats the spec's 1
    ("measured-zero", obs(2, arrival=8, service=0.0), 1.0, (8, 1.0, ())),  # 0 is not a rate: the spec's 1
    ("arrival-unknown", obs(2, arrival=None), 1.0, (None, 1.0, ("arrivalRate",))),
    ("arrival-nan", obs(2, arrival=float("nan")), 1.0, (None, 1.0, ("arrivalRate",))),
    ("service-unknown", obs(2, arrival=3), None, (3, None, ("serviceRate",))),
    ("both-unknown", obs(2), None, (None, None, ("arrivalRate", "serviceRate"))),
])
def test_queue_inputs(name, ob, service_spec, want):
    sp = dataclasses.replace(spec([], **SLO), service_rate_per_replica=service_spec)
    lam, mu, missing = queue_inputs(ob, sp)
    assert (lam, mu, missing.unknown) == want


@pytest.mark.parametrize("name,lam,mu,cur,want", [
    ("utilisation", 8, 1, 6, (10, None)),  # ceil(8/(1*0.8))=10; P(wait>60s) ~ 0
    ("faster-replicas", 8, 2, 6, (5, None)),  # ceil(8/(2*0.8))=5
    ("down-within-tolerance", 7.5, 1, 11, (11, 10)),  # ceil(7.5/0.8)=10 vs 11: (11-10)/11=0.09 <= 0.1: hold 11
    ("down-past-tolerance", 7.5, 1, 14, (10, None)),  # (14-10)/14=0.29 > 0.1: 10
    ("from-zero", 0.5, 1, 0, (1, None)),  # ceil(0.5/0.8)=1; no tolerance from 0 replicas
    # up only past the 1 m rate's noise, 2.326 sqrt(lambda/60), and then lambda's whole need:
    ("up-past-noise", 8.6, 1, 9, (11, None)),  # 8.6 - 2.326 sqrt(8.6/60) = 7.72: ceil(7.72/0.8)=10 > 9: ceil(8.6/0.8)=11
    ("up-within-noise", 8.2, 1, 10, (10, 11)),  # ceil(8.2/0.8)=11, but 8.2 - 0.86 = 7.34: ceil(7.34/0.8)=10: hold 10
    ("saturated-no-gate", 1.05, 1, 1, (2, None)),  # 1.05 >= 1 x 1, more than 1 replica serves saturated: ceil(1.05/0.8)=2
    # (gated, 1.05 - 2.326 sqrt(1.05/60) = 0.74 would hold 1 replica at rho 1.05: the noise exceeds the headroom)
    ("from-zero-no-gate", 0.05, 1, 0, (1, None)),  # ceil(0.05/0.8)=1; gated, 0.05 - 2.326 sqrt(0.05/60) < 0 would hold 0
    ("at-zero-rate", 0, 1, 3, (0, None)),  # nothing arrives: 0 (the scale-down window and minReplicas hold it)
])
def test_queueing_rule(name, lam, mu, cur, want):
    r = queueing_rule(lam, mu, spec([], maxReplicas=20, **SLO), cur)
    assert (r.rule, r.replicas, r.demand) == (QUEUEING,) + want, r.reason


LINE = ((0.0, 1.0), (15.0, 2.0), (30.0, 3.0), (45.0, 4.0), (60.0, 5.0))  # 1/15 req/s per s

@pytest.mark.parametrize("name,arrivals,lam,kw,want", [
    ("ramp", LINE, 5, {"forecast": {"scaleUp": True}}, (8.0, 14, 10)),
    # a line, so Holt is exact: in 45 s 5 + 45/15 = 8 req/s: ceil(8/0.8)=10; in 90 s 5 + 90/15 = 11: ceil(11/0.8)=14
    ("ramp-by-default", LINE, 5, {}, (8.0, 14, None)),  # the same beside a recent rate, asking for nothing
    ("flat", tuple((t, 5.0) for t, _ in LINE), 5, {}, (5.0, 7, None)),
    # no trend: 5 req/s = now, no recommendation; pre-warm for ceil(5/0.8)=7
    ("falling", tuple((t, 9.0 - x) for t, x in LINE), 4, {}, (1.0, 0, None)),
    # 4 - 45/15 = 1 req/s: below now, no recommendation; in 90 s 4 - 90/15 = -2, floored at 0 req/s: 0 replicas
    ("too-few-samples", LINE[-2:], 5, {}, (None, None, None)),  # 2 samples are not a trend (3 needed)
    ("disabled", LINE, 5, {"forecast": {"enabled": False}}, (None, None, None)),
    ("no-cold-start", LINE, 5, {"coldStartSeconds": 0}, (None, None, None)),  # no horizon to look over
])
def test_forecast(name, arrivals, lam, kw, want):
    sp = spec([], maxReplicas=20, **{**SLO, **kw})
    f = forecast(arrivals, lam, 1.0, sp, 60.0, forecast_asks(sp, obs(7, arrival=lam, recent=lam)))
    rate = None if f.rate is None else round(f.rate, 9)
    assert (rate, f.prewarm_target, None if f.rec is None else f.rec.replicas) == want
    assert f.rec is None or f.rec.rule == FORECAST


@pytest.mark.parametrize("name,scale_up,recent,want", [
    ("unset-beside-a-recent-rate", None, 5.0, False),  # the recent rate leads a burst: the forecast only pre-warms
    ("unset-recent-zero", None, 0.0, False),  # nothing arrived lately is a reading too
    ("unset-no-recent-rate", None, None, True),  # --recent-window 0, one sample in the window, a failed query
    ("unset-nan", None, float("nan"), True),
    ("unset-negative", None, -1.0, True),  # not a rate: as if none were read
    ("true", True, 5.0, True),
    ("false", False, None, False),  # told not to: never, even with no recent rate
])
def test_forecast_asks(name, scale_up, recent, want):
    sp = spec([], maxReplicas=20, **SLO, **({} if scale_up is None else {"forecast": {"scaleUp": scale_up}}))
    asks, note = forecast_asks(sp, obs(7, arrival=5, recent=recent))
    assert asks == want
    assert note == (" (forecast.scaleUp unset: no recent rate read)" if want and scale_up is None else "")


def test_queueing_and_forecast_keeps_known_arrivals_only():
    sp = spec([], maxReplicas=20, **SLO, forecast={"scaleUp": True})
    rules, arrivals, f = queueing_and_forecast(LINE[:-1], obs(7, arrival=5), sp, 60.0)
    assert arrivals == LINE and [r.rule for r in rules.recs] == [QUEUEING, FORECAST] and f.rate == pytest.approx(8)
    rules, arrivals, f = queueing_and_forecast(LINE[:-1], obs(7, arrival=None), sp, 60.0)
    assert arrivals == LINE[:-1] and rules.recs == () and rules.unknown == ("arrivalRate",) and f.rate is None
    # without an slo the phase does nothing, not even record the arrival rate
    assert queueing_and_forecast(LINE[:-1], obs(7, arrival=5), spec(), 60.0) == (Rules(), LINE[:-1], f)
    # at most 256 samples are kept: 300 in, the last 256 out (Holt reads only the last 32)
    many = tuple((float(t), 1.0) for t in range(300))
    assert len(queueing_and_forecast(many, obs(7, arrival=1), sp, 300.0)[1]) == 256


@pytest.mark.parametrize("name,recent,lam,window,want", [
    ("burst", 12.0, 5.0, None, 15),  # the last scrapes saw 12 req/s, the minute 5: ceil(12/(1*0.8))=15
    ("not-above", 5.0, 5.0, None, None),  # no higher than the 1 m rate: the queueing rule already asks for it
    ("below", 2.0, 5.0, None, None),  # a lull is not a reason to scale down: nothing
    ("unknown", None, 5.0, None, None),  # the query found one sample (window under two scrapes) or failed
    ("nan", float("nan"), 5.0, None, None),
    ("negative", -3.0, 5.0, None, None),
    # z(0.99) = 2.326, the margin 2.326 sqrt(lambda (2/w - 1/60)); at w = 30: 2.326 sqrt(0.05 lambda)
    ("burst-30s", 12.0, 5.0, 30.0, 15),  # 12 > 5 + 2.326 sqrt(0.25) = 6.16: ceil(12/0.8)=15
    ("noise", 4.1, 3.4, 30.0, None),  # 4.1 <= 3.4 + 2.326 sqrt(0.17) = 4.36: a steady rate's upper tail
    ("past-noise", 4.5, 3.4, 30.0, 6),  # 4.5 > 4.36: the whole recent rate, ceil(4.5/0.8)=6
    ("no-window", 4.1, 3.4, None, 6),  # window unknown: no margin, ceil(4.1/0.8)=6
    ("from-idle", 0.2, 0.0, 30.0, 1),  # after an idle minute the margin is 0: ceil(0.2/0.8)=1
    ("45s-window", 4.2, 3.4, 45.0, 6),  # 3.4 + 2.326 sqrt(3.4 (2/45 - 1/60)) = 4.12 < 4.2: ceil(4.2/0.8)=6
    ("as-long-as-1m", 4.1, 3.4, 60.0, 6),  # no shorter than the 1 m rate: no margin (the daemon reads none)
])
def test_recent_rule(name, recent, lam, window, want):
    r = recent_rule(recent, lam, 1.0, spec([], maxReplicas=20, **SLO), window)
    assert recent_rule(recent, lam, 1.0, spec([], maxReplicas=20, **{**SLO, "coldStartSeconds": 0}), window) is None
    assert (None if r is None else r.replicas) == want
    assert r is None or (r.rule == RECENT and r.reason.startswith(f"recent arrivals {recent:g} req/s, above the 1 m rate {lam:g}"))
    assert r is None or ("noise)" in r.reason) == (window is not None and window < 60 and lam > 0)


@pytest.mark.parametrize("percentile,want", [
    (0.99, 2.326),  # the SLO's 99th percentile: 2.33 standard deviations
    (0.9, 1.282),
    (0.5, 0.0),  # at a median no margin
    (0.3, 0.0),  # below one the quantile is negative: no margin, not a negative one
])
def test_noise_z(percentile, want):
    assert noise_z(spec([], **{**SLO, "slo": {"queueWaitSeconds": 60, "percentile": percentile}})) == \
        pytest.approx(want, abs=1e-3)
    assert noise_z(spec()) == 0.0  # no slo: nothing to size a margin by


def test_queueing_and_forecast_adds_the_recent_rate_last():
    sp = spec([], maxReplicas=20, **SLO, forecast={"scaleUp": True})
    rules, _, _ = queueing_and_forecast(LINE[:-1], obs(7, arrival=5, recent=12), sp, 60.0)
    # queueing ceil(5/0.8)=7, forecast 8 req/s -> 10, recent 12 req/s -> 15
    assert [(r.rule, r.replicas) for r in rules.recs] == [(QUEUEING, 7), (FORECAST, 10), (RECENT, 15)]
    rules, _, _ = queueing_and_forecast(LINE[:-1], obs(7, arrival=None, recent=12), sp, 60.0)
    assert rules.recs == ()  # no 1 m rate: the recent rate alone does not decide


# ---------------------------------------------------------------- 3. the largest, or hold

UNK = Rules(unknown=("gpu",), notes=("gpu unknown (no value)",))

@pytest.mark.parametrize("name,rules,cur,want", [
    ("largest", Rules((rec("signal:a", 3), rec("signal:b", 5))), 4, (5, "signal:b", 5)),  # max(3, 5)=5
    ("tie-first-listed", Rules((rec("signal:a", 5), rec(QUEUEING, 5))), 4, (5, "signal:a", 5)),
    ("held-need-counts", Rules((rec("signal:a", 4, demand=6),)), 4, (4, "signal:a", 6)),
    # a hold within tolerance at 4 whose computed need is 6: panic sees 6
    ("forecast-not-demand", Rules((rec(QUEUEING, 5), rec(FORECAST, 9))), 4, (9, FORECAST, 5)),
    # the forecast wins (9) but panic sees only load measured now: 5
    ("recent-not-demand", Rules((rec(QUEUEING, 5), rec(RECENT, 11))), 4, (11, RECENT, 5)),
    # the recent rate wins (11); held as a forecast, it does not set off panic either: 5
    ("nothing", Rules(), 4, (4, HOLD, None)),
    ("only-unknown", UNK, 4, (4, UNKNOWN_HOLD, None)),
    ("unknown-blocks-down", Rules((rec("signal:a", 2),)) + UNK, 6, (6, UNKNOWN_HOLD, 2)),  # 2 < 6: hold 6
    ("unknown-allows-up", Rules((rec("signal:a", 8),)) + UNK, 6, (8, "signal:a", 8)),  # 8 > 6: up
])
def test_pick_largest(name, rules, cur, want):
    v, demand = pick_largest(rules, cur)
    assert (v.replicas, v.rule, demand) == want, v.reason


def test_pick_largest_reasons():
    assert pick_largest(Rules(skipped=("q 4: no ready replicas to scale from",)), 0)[0].reason == \
        "no recommendation (q 4: no ready replicas to scale from); hold 0"
    v, _ = pick_largest(Rules((rec("signal:a", 2),)) + UNK, 6)
    assert v.reason == ("gpu unknown (no value): hold 6, no scale-down on missing data "
                        "(known inputs said 2: signal:a says 2)")
    v, _ = pick_largest(Rules((rec("signal:a", 8),)) + UNK, 6)
    assert v.reason == "signal:a says 8; gpu unknown (no value) (scale-down blocked, scale-up allowed)"


# ---------------------------------------------------------------- 4. stabilisation

@pytest.mark.parametrize("name,rules,picked,cur,want", [
    ("forecast-wins", Rules((rec(QUEUEING, 5), rec(FORECAST, 9))), V(9, FORECAST, ""), 4, (5, 9)),
    # the window keeps the measured 5; the forecast's 9 is kept apart (one cold start)
    ("recent-and-forecast", Rules((rec(QUEUEING, 5), rec(FORECAST, 9), rec(RECENT, 11))), V(11, RECENT, ""), 4,
     (5, 11)),  # the larger of the two anticipated, max(9, 11)=11, kept one cold start; the window keeps 5
    ("recent-alone-held", Rules((rec(RECENT, 11),)), V(11, RECENT, ""), 4, (4, 11)),
    # no measured recommendation: the window keeps cur (4), not the anticipated 11
    ("queueing-only", Rules((rec(QUEUEING, 5),)), V(5, QUEUEING, ""), 4, (5, None)),
    ("signal-above", Rules((rec("signal:a", 7), rec(QUEUEING, 5), rec(FORECAST, 6))), V(7, "signal:a", ""), 4,
     (7, 6)),  # max(7, 5)=7 measured
    ("hold", Rules(), V(4, HOLD, ""), 4, (4, None)),  # no rule: the hold at cur is remembered
    ("unknown-hold", Rules((rec("signal:a", 2),)) + UNK, V(6, UNKNOWN_HOLD, ""), 6, (6, None)),
    # missing data held 6 instead of the known 2: the window remembers the 6 held
])
def test_split_recommendations(name, rules, picked, cur, want):
    assert split_recommendations(rules, picked, cur) == want


@pytest.mark.parametrize("name,anticipated,hold_s,want", [
    ("fresh-forecast", ((970.0, 9),), 45.0, ((800.0, 6), (970.0, 9))),  # 1000-970=30 s < 45 s: held
    ("stale-forecast", ((950.0, 9),), 45.0, ((800.0, 6),)),  # 50 s > 45 s: the rise came or did not
    ("no-horizon", ((999.0, 9),), 0.0, ((800.0, 6),)),  # coldStartSeconds 0: a forecast is never held
])
def test_held_recommendations(name, anticipated, hold_s, want):
    state = ScaleState(recommendations=((800.0, 6),), anticipated=anticipated)
    assert held_recommendations(state, NOW, hold_s) == want


DEFAULT_BEHAVIOR = spec().behavior  # scale-up window 0 s, scale-down window 300 s

@pytest.mark.parametrize("name,raw,history,cur,started,kw,want", [
    ("no-history-old-state", 2, (), 8, 0.0, {}, (2, "r")),  # nothing in the windows: 2
    ("down-window-max", 2, ((750.0, 6), (900.0, 5)), 8, 0.0, {}, (6, STABILIZATION)),
    # max(2, 6, 5)=6: t=750 > 1000-300
    ("down-window-expired", 2, ((650.0, 8),), 8, 0.0, {}, (2, "r")),  # t=650 <= 700: out
    ("young-state", 2, (), 8, 800.0, {}, (8, STABILIZATION)),
    # 1000-800=200 s < 300 s of history: no scale-down, max(2, cur 8)=8
    ("young-state-up", 9, (), 8, 800.0, {}, (9, "r")),  # a young state still scales up
    ("up-window-min", 6, ((970.0, 4),), 4, 0.0, {"scaleUp": {"stabilizationWindowSeconds": 60}}, (4, STABILIZATION)),
    # lowest in the last 60 s: min(6, 4)=4, and never below cur: max(4, 4)=4
    ("up-window-partial", 8, ((970.0, 6),), 4, 0.0, {"scaleUp": {"stabilizationWindowSeconds": 60}},
     (6, STABILIZATION)),  # min(8, 6)=6 > cur 4: up to 6 only
])
def test_stabilise(name, raw, history, cur, started, kw, want):
    beh = spec(behavior=kw).behavior if kw else DEFAULT_BEHAVIOR
    v = stabilise(V(raw, "r", "why"), history, beh, cur, NOW, started)
    assert (v.replicas, v.rule) == want, v.reason


def test_stabilise_says_which_window():
    v = stabilise(V(2, "r", "why"), ((900.0, 6),), DEFAULT_BEHAVIOR, 8, NOW, 0.0)
    assert v.reason == "why; stabilised at 6 (highest recommendation in the last 300s)"
    v = stabilise(V(2, "r", "why"), (), DEFAULT_BEHAVIOR, 8, NOW, 900.0)
    assert v.reason.endswith("(less than 300s of history (new daemon or leader): no scale-down yet)")


# ---------------------------------------------------------------- 5. panic

@pytest.mark.parametrize("name,state,demand,ready,want", [
    ("trigger", ScaleState(), 9, 3, (True, 1060.0, 0)),  # 9 >= 2 x 3 ready: panic until 1000+60
    ("below", ScaleState(), 5, 3, (False, None, 0)),  # 5 < 6
    ("window-average", ScaleState(demand=((996.0, 4),)), 9, 3, (True, 1060.0, 0)),  # mean(4, 9)=6.5 >= 6
    ("window-average-low", ScaleState(demand=((996.0, 2),)), 9, 3, (False, None, 0)),  # mean(2, 9)=5.5 < 6
    ("old-demand-ignored", ScaleState(demand=((990.0, 2),)), 9, 3, (True, 1060.0, 0)),
    # t=990 <= 1000-6: out of the window, mean(9)=9
    ("no-ready", ScaleState(), 9, 0, (False, None, 0)),  # no ready replicas: no ratio, no panic
    ("continues", ScaleState(panic_until=1030.0, panic_peak=9), 3, 3, (True, 1030.0, 9)),
    # 3 < 6, but the last trigger's panic runs until 1030; the peak 9 is kept
    ("extended", ScaleState(panic_until=1030.0, panic_peak=9), 7, 3, (True, 1060.0, 9)),  # 7 >= 6: until 1060
    ("ended", ScaleState(panic_until=990.0, panic_peak=9), 3, 3, (False, None, 0)),  # 990 <= now: over
    ("no-demand", ScaleState(), None, 3, (False, None, 0)),  # nothing measured now, nothing in the window
])
def test_panic_mode(name, state, demand, ready, want):
    v, p = panic_mode(V(4, "r", "why"), state, demand, ready, spec().behavior.panic, NOW)
    assert (p.active, p.until, p.peak) == want
    assert v.replicas == 4 and v.rule == "r"  # panic only reports; later phases act on it
    assert ("; panic: demand" in v.reason) == (p.active and not (state.panic_until or 0) > NOW)


# ---------------------------------------------------------------- 6. rate limits

UP2 = {"scaleUp": {"maxPodsPerPeriod": 2, "periodSeconds": 60}}

@pytest.mark.parametrize("name,desired,cur,events,kw,panicking,want", [
    ("up-default", 9, 3, (), {}, False, (7, RATE_LIMIT)),  # max(3+4, ceil(3*2))=7 per 15 s
    ("up-default-percent", 30, 10, (), {}, False, (20, RATE_LIMIT)),  # max(10+4, ceil(10*2))=20
    ("up-under-limit", 6, 3, (), {}, False, (6, "r")),  # 6 <= 7
    ("up-panicking", 9, 3, (), {}, True, (9, "r")),  # a panic lifts the upward limit
    ("up-pods", 14, 10, (), UP2, False, (12, RATE_LIMIT)),  # 10+2=12
    ("up-spent", 14, 10, ((990.0, 2),), UP2, False, (10, RATE_LIMIT)),
    # +2 at t=990 within 60 s: period start 10-2=8, limit max(10, 8+2)=10
    ("up-old-event", 14, 10, ((930.0, 2),), UP2, False, (12, RATE_LIMIT)),  # t=930 out of the period: 10+2=12
    ("up-unapplied-never-blocks", 5, 1, ((995.0, 8),), {}, False, (4, RATE_LIMIT)),
    # +8 decided, never applied: period start max(0, 1-8)=0 (-7 would give max(1, -7+4)=1, blocked for good);
    # limit max(1, 0+4, ceil(0*2))=4
    ("down-pods", 2, 6, (), {"scaleDown": {"maxPodsPerPeriod": 1}}, False, (5, RATE_LIMIT)),  # 6-1=5
    ("down-percent", 2, 6, (), {"scaleDown": {"maxPercentPerPeriod": 50}}, False, (3, RATE_LIMIT)),
    # floor(6*0.5)=3
    ("down-both-smaller", 2, 6, (), {"scaleDown": {"maxPodsPerPeriod": 1, "maxPercentPerPeriod": 50}}, False,
     (3, RATE_LIMIT)),  # min(6-1, floor(6*0.5))=3: the larger change
    ("down-default", 0, 6, (), {}, False, (0, "r")),  # floor(6*(1-1.0))=0: no limit
    ("down-while-panicking", 2, 6, (), {"scaleDown": {"maxPodsPerPeriod": 1}}, True, (5, RATE_LIMIT)),
    # panic lifts only the upward limit (the panic floor phase stops the scale-down)
    ("hold", 6, 6, (), {}, False, (6, "r")),
])
def test_rate_limit(name, desired, cur, events, kw, panicking, want):
    beh = spec(behavior=kw).behavior
    v = rate_limit(V(desired, "r", "why"), events, beh, cur, NOW, panicking)
    assert (v.replicas, v.rule) == want, v.reason


def test_rate_limit_reason():
    v = rate_limit(V(9, "r", "why"), (), DEFAULT_BEHAVIOR, 3, NOW, False)
    assert v.reason == "why; scale-up limited to 7 (max(3+4, ceil(3*2)) per 15s)"
    v = rate_limit(V(2, "r", "why"), (), spec(behavior={"scaleDown": {"maxPercentPerPeriod": 50}}).behavior, 6,
                   NOW, False)
    assert v.reason == "why; scale-down limited to 3 (floor(6*0.5) per 15s)"


# ---------------------------------------------------------------- 7. panic floor and 8. clamp

@pytest.mark.parametrize("name,desired,panic,cur,want", [
    ("not-panicking", 2, Panic(False, None, 0), 9, (2, "r")),
    ("holds-cur", 2, Panic(True, 1030.0, 0), 9, (9, PANIC)),  # max(cur 9, peak 0)=9
    ("holds-peak", 7, Panic(True, 1030.0, 9), 7, (9, PANIC)),  # max(7, peak 9)=9: the peak not applied yet stays
    ("up-untouched", 12, Panic(True, 1030.0, 9), 7, (12, "r")),
])
def test_panic_floor(name, desired, panic, cur, want):
    v = panic_floor(V(desired, "r", "why"), panic, cur)
    assert (v.replicas, v.rule) == want


@pytest.mark.parametrize("name,desired,lo,hi,want", [
    ("within", 5, 1, 10, (5, "r", "why")),
    ("capped", 26, 1, 10, (10, MAX_REPLICAS, "why (capped by maxReplicas 10)")),
    ("raised", 0, 2, 10, (2, MIN_REPLICAS, "why (raised to minReplicas 2)")),
    ("edges", 10, 10, 10, (10, "r", "why")),
])
def test_clamp(name, desired, lo, hi, want):
    v = clamp(V(desired, "r", "why"), lo, hi)
    assert (v.replicas, v.rule, v.reason) == want


# ---------------------------------------------------------------- 9. warm pool

@pytest.mark.parametrize("name,desired,cur,warm_now,kw,prewarm_target,want", [
    ("promote-first", 9, 3, 2, {"warmReplicas": 2}, None, (1, 2, 4, 0, 0, "; promote 2 warm, start 4 cold")),
    # +6: 2 promoted, 4 cold; pool = min(2, max 10 - 9)=1
    ("promote-only", 6, 4, 3, {"warmReplicas": 3, "maxReplicas": 20}, None, (3, 2, 0, 0, 0, "; promote 2 warm")),
    ("cold-only", 5, 3, 0, {}, None, (0, 0, 2, 0, 0, "; start 2 cold")),
    ("demote", 2, 6, 0, {"warmReplicas": 2}, None, (2, 0, 0, 2, 0, "; demote 2 to the warm pool")),
    # -4: the empty pool of 2 takes 2, the other 2 are deleted
    ("pool-full", 2, 6, 1, {"warmReplicas": 1}, None, (1, 0, 0, 0, 0, "")),
    ("at-max", 10, 10, 2, {"warmReplicas": 2}, None, (0, 0, 0, 0, 0, "")),  # no room to promote into: pool 0
    ("prewarm", 10, 10, 0, {"maxReplicas": 20}, 14, (0, 0, 0, 0, 4, "")),  # 14 - 10 = 4 to pre-warm
    ("prewarm-capped", 10, 10, 0, {"maxReplicas": 12}, 14, (0, 0, 0, 0, 2, "")),  # min(14, 12) - 10 = 2
    ("prewarm-none", 10, 10, 0, {"maxReplicas": 20}, 8, (0, 0, 0, 0, 0, "")),  # 8 < 10: max(0, -2)=0
])
def test_warm_pool(name, desired, cur, warm_now, kw, prewarm_target, want):
    p = warm_pool(desired, cur, warm_now, spec(**kw), prewarm_target)
    assert (p.warm, p.promote, p.cold_start, p.demote, p.prewarm, p.note) == want


WARM = {**SLO, "warmReplicas": 2}  # mu 1 req/s, util 0.8 (a 60 s wait bound never binds): ceil(lam/0.8)
RISE = ((940.0, 2.0), (970.0, 2.0), (NOW, 4.0))  # 2 -> 4 req/s within 30 s < coldStartSeconds 45


@pytest.mark.parametrize("name,sp,arrivals,arrival,desired,warm_now,want", [
    ("flat", WARM, ((900.0, 4.0), (950.0, 4.0), (NOW, 4.0)), 4.0, 5, 0, 0),
    # no rise: ceil(4/0.8)=5 needed, 5 serving: no pod worth its GPU
    ("rise-needs-pool", WARM, RISE, 4.0, 5, 0, 1),
    # rose 2 within 45 s, 2 - 2.33 x sqrt((4 + 2)/60) = 1.26 beyond the noise of two 1 m counts;
    # the rate now less its noise 4 - 2.33 x sqrt(4/60) = 3.4: 3.4+1.26 req/s needs
    # ceil(4.66/0.8)=6, 6-5=1 beyond serving (from 4 itself: 7, 2 pods)
    ("rise-covered", WARM, RISE, 4.0, 8, 0, 0),  # 8 serving already cover 8: no new pod loaded
    ("loaded-pod-kept", WARM, RISE, 4.0, 8, 1, 1),
    # 8 serving, stabilised above the measured need ceil(4/0.8)=5: the loaded pod stays, min(1, 7-5)=1
    ("rise-slower-than-cold-start", WARM, ((900.0, 2.0), (NOW, 4.0)), 4.0, 5, 0, 0),
    # 2 -> 4 over 100 s > 45 s: a cold start follows it, rise 0
    ("old-rise-remembered", WARM, ((500.0, 0.0), (530.0, 4.0), (NOW, 4.0)), 4.0, 5, 0, 2),
    # 0 -> 4 in 30 s, 470 s ago (history max(600, 8 x 45)=600 s): 4 - 2.33 x sqrt(4/60) = 3.4,
    # 3.4 (4 less its noise) + 3.4 needs ceil(6.8/0.8)=9, 9-5=4, capped at 2
    ("edge-noise-no-new-pod", WARM, ((940.0, 4.5), (970.0, 4.5), (NOW, 4.9)), 4.9, 6, 0, 0),
    # 4.5 -> 4.9 within the noise: rise 0; 4.9 needs ceil(4.9/0.8)=7 but 4.9 - 2.33 x sqrt(4.9/60)
    # = 4.23 needs ceil(5.29)=6: the 6 serving carry it, no pod (the queueing rule holds 6 too)
    ("rise-within-lambdas-noise", WARM, RISE, 4.0, 6, 0, 0),
    # 3.4+1.26 needs 6, the 6 serving carry it: no new pod (from 4 itself, 7: one)
    ("rise-loaded-pod-kept", WARM, RISE, 4.0, 6, 1, 1),
    # a loaded pod stays while 4+1.26 could outgrow what 4 needs: min(1, ceil(5.26/0.8) - ceil(4/0.8)) = min(1, 7-5)
    ("edge-noise-loaded-pod-kept", WARM, ((940.0, 4.5), (970.0, 4.5), (NOW, 4.9)), 4.9, 6, 1, 1),
    # loaded, kept as before the gate: 7 needed at 4.9 itself, min(1, max(7 - 6, 7 - 7)) = 1
    ("no-slo", {"warmReplicas": 2}, RISE, 4.0, 5, 0, 2),  # no queueing rule: warmReplicas as configured
    ("rate-unknown", WARM, RISE[:-1], None, 5, 0, 2),  # no rate now: as configured
    ("at-max", WARM, RISE, 4.0, 10, 0, 0),  # maxReplicas 10 serving: a warm pod could never be promoted
    ("flat-median-slo", {**WARM, "slo": {"queueWaitSeconds": 60, "percentile": 0.3}},
     ((900.0, 4.0), (970.0, 4.0), (NOW, 4.0)), 4.0, 5, 0, 0),
    # at percentile 0.3 the quantile is -0.52: taken as is, a flat 4 req/s would rise by
    # 0.52 x sqrt(8/60) = 0.19 and 4.19 needs ceil(4.19/0.8) = 6, a pod; no margin below a median
    ("noise-only", WARM, ((940.0, 4.0), (970.0, 3.6), (NOW, 4.4)), 4.4, 5, 0, 0),
    # 3.6 -> 4.4 is 0.8, within the noise of two 1 m counts: 2.33 x sqrt((4.4 + 3.6)/60) = 0.85;
    # rise 0, and 4.4 less its noise, 4.4 - 2.33 x sqrt(4.4/60) = 3.77, needs ceil(3.77/0.8)=5,
    # 5 serving: no pod (counted as a rise: 3.77 + 0.8 = 4.57 needs 6, 1 pod)
])
def test_warm_size(name, sp, arrivals, arrival, desired, warm_now, want):
    sigs = () if "slo" in sp else (Q5,)  # a spec needs a signal or an slo
    warm, note = warm_size(arrivals, obs(5, warm=warm_now, arrival=arrival), spec(sigs, **sp), desired, NOW, 0.0)
    assert warm == want, note


@pytest.mark.parametrize("started,want", [
    (500.0, 2),  # 500 s of history < the 600 s of rates it reads: warmReplicas 2, as configured
    (400.0, 0),  # 600 s: flat 4 req/s, no rise, 5 serving cover ceil(4/0.8)=5
])
def test_warm_size_young_state_keeps_the_configured_pool(started, want):
    flat = ((900.0, 4.0), (950.0, 4.0), (NOW, 4.0))
    assert warm_size(flat, obs(5, arrival=4.0), spec([], **WARM), 5, NOW, started)[0] == want


def test_warm_size_says_why_smaller():
    _, note = warm_size(RISE, obs(5, arrival=4.0), spec([], **{**SLO, "warmReplicas": 5}), 5, NOW, 0.0)
    assert note == ("; warm pool 1: rate rose up to 1.26 req/s within 45s over the last 60s, "
                    "4 (3.4 less its noise) +1.26 req/s needs 6 vs 5 serving")


# ---------------------------------------------------------------- 10. next state

def test_next_state_trims_each_history_to_its_window():
    state = ScaleState(started_at=0.0, recommendations=((650.0, 8), (800.0, 6)), demand=((990.0, 3), (996.0, 4)),
                       events=((980.0, 1), (990.0, 2)), arrivals=((300.0, 1.0), (500.0, 2.0)))
    s = next_state(state, spec(), NOW, 0.0, cur=4, raw=5, desired=6, demand=7,
                   arrivals=state.arrivals + ((NOW, 3.0),), panic=Panic(True, 1060.0, 9))
    assert s.recommendations == ((800.0, 6), (NOW, 5))  # 300 s window: t=650 out; the raw 5, not the 6 decided
    assert s.demand == ((996.0, 4), (NOW, 7))  # 6 s window: t=990 out
    assert s.events == ((990.0, 2), (NOW, 2))  # 15 s period: t=980 out; +2 = 6 - 4
    assert s.arrivals == ((500.0, 2.0), (NOW, 3.0))  # max(600, 8 x 45)=600 s: t=300 out
    assert s.anticipated == ()  # no forecast given
    assert (s.started_at, s.panic_until, s.panic_peak) == (0.0, 1060.0, 9)  # max(peak 9, desired 6)


def test_next_state_keeps_forecasts_one_cold_start():
    state = ScaleState(anticipated=((950.0, 9), (960.0, 8)))
    s = next_state(state, spec(**SLO), NOW, 0.0, cur=4, raw=5, desired=9, demand=5, arrivals=(),
                   panic=Panic(False, None, 0), anticipated=7)
    assert s.anticipated == ((960.0, 8), (NOW, 7))  # coldStartSeconds 45: t=950 <= 955 out
    assert s.recommendations == ((NOW, 5),)  # the measured 5, not the 9 decided


@pytest.mark.parametrize("name,desired,panic,want_events,want_peak", [
    ("no-change", 4, Panic(False, None, 0), (), 0),  # 4 = cur: no event
    ("panic-peak-rises", 12, Panic(True, 1060.0, 9), ((NOW, 8),), 12),  # max(9, 12)=12; +8 = 12 - 4
    ("panic-over", 6, Panic(False, None, 9), ((NOW, 2),), 0),  # no panic: no peak
])
def test_next_state_events_and_peak(name, desired, panic, want_events, want_peak):
    s = next_state(ScaleState(), spec(), NOW, NOW, cur=4, raw=desired, desired=desired, demand=None, arrivals=(),
                   panic=panic)
    assert (s.events, s.panic_peak, s.demand) == (want_events, want_peak, ())
