"""The queued hold (autoscaler.policy.queued_hold_s, queued_peak, queued_kept, queued_floor), as
tables whose rows show the arithmetic, and through ``decide``."""
from __future__ import annotations

import copy

import pytest

from autoscaler.policy import (FORECAST, QUEUED_HOLD, QUEUEING, RECENT, Observation, Recommendation, Rules, ScaleState,
                               Verdict, decide, queued_floor, queued_hold_s, queued_kept, queued_peak)
from autoscaler.spec import parse_spec

NOW = 1000.0
Q = {"type": "queueDepth", "target": 5}


def spec(**kw):
    d = {"scaleTargetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 40, "signals": [Q],
         "slo": {"queueWaitSeconds": 2}, "serviceRatePerReplica": 0.5, "coldStartSeconds": 47}
    d.update(copy.deepcopy(kw))
    return parse_spec(d)


def rec(rule, n):
    return Recommendation(rule, n, f"{rule} says {n}")


@pytest.mark.parametrize("name,kw,want", [
    ("cold-start-longer", {}, 600.0),  # 47 s > 2 s: max(600, 8 x 47 = 376) = 600
    ("long-cold-start", {"coldStartSeconds": 100}, 800.0),  # max(600, 8 x 100)
    ("cold-start-within-bound", {"coldStartSeconds": 1.5}, 0.0),  # 1.5 s <= 2 s: a replica returns in time
    ("ttft-bound", {"slo": {"ttftSeconds": 5}}, 600.0),  # the bound is the TTFT's: 47 s > 5 s
    ("ttft-bound-longer", {"slo": {"ttftSeconds": 60}}, 0.0),  # 47 s <= 60 s: a replica returns in time
])
def test_queued_hold_s(name, kw, want):
    assert queued_hold_s(spec(**kw)) == want


@pytest.mark.parametrize("name,queue,recs,want", [
    ("queue-forecast-largest", 0.3, (rec("signal:queueDepth", 4), rec(QUEUEING, 9), rec(FORECAST, 14)), 14),
    # requests wait (0.3/replica > 0): max(4, 9, 14) = 14, the forecast's included
    ("queue-recent-largest", 0.3, (rec(QUEUEING, 9), rec(FORECAST, 14), rec(RECENT, 18)), 18),
    # max(9, 14, 18) = 18: with a queue, the recent rate's ask is kept as the forecast's is
    ("no-queue", 0.0, (rec(QUEUEING, 9), rec(FORECAST, 14)), None),  # nothing waits: no peak
    ("capped", 2.0, (rec("signal:queueDepth", 70),), 40),  # min(70, maxReplicas 40)
    ("queue-unknown", None, (rec(QUEUEING, 9),), None),  # an unknown queue is not a queue
    ("no-recs", 1.0, (), None),
])
def test_queued_peak(name, queue, recs, want):
    obs = Observation(ready=4, signals={"queueDepth": queue})
    assert queued_peak(Rules(recs), obs, spec()) == want


@pytest.mark.parametrize("name,replicas,kept,cur,want", [
    ("holds-down", 5, ((700.0, 12), (900.0, 9)), 14, (12, QUEUED_HOLD)),  # max kept 12: min(cur 14, 12) = 12 > 5
    ("never-up", 5, ((900.0, 20),), 14, (14, QUEUED_HOLD)),  # min(cur 14, 20) = 14: no scale-down, no scale-up
    ("above-floor", 13, ((900.0, 12),), 14, (13, "r")),  # 13 >= 12: the verdict stands
    ("scale-up-untouched", 16, ((900.0, 12),), 14, (16, "r")),
    ("nothing-kept", 5, (), 14, (5, "r")),
])
def test_queued_floor(name, replicas, kept, cur, want):
    v = queued_floor(Verdict(replicas, "r", "why"), kept, cur, NOW)
    assert (v.replicas, v.rule) == want


def test_queued_floor_says_why():
    v = queued_floor(Verdict(5, "r", "why"), ((700.0, 12),), 14, NOW)
    assert v.reason == "why; held at 12: requests queued 300s ago with 12 recommended"


# Through decide: 14 serving, no load now (rate 0, no queue); the scale-down window's
# history is older than 300 s, so stabilisation alone gives 1.
OLD = ScaleState(started_at=0.0, recommendations=((650.0, 14),))


@pytest.mark.parametrize("name,queued,kw,want", [
    ("kept-600s", ((500.0, 12),), {}, (12, QUEUED_HOLD)),  # 1000-500=500 s < 600 s: floor 12
    ("expired", ((350.0, 12),), {}, (1, "minReplicas")),  # 650 s >= 600 s: the floor is gone
    ("fast-cold-start", ((500.0, 12),), {"coldStartSeconds": 1}, (1, "minReplicas")),  # 1 s <= 2 s: no hold
])
def test_decide_queued_hold(name, queued, kw, want):
    sp = spec(**kw)
    state = ScaleState(started_at=0.0, recommendations=OLD.recommendations, queued=queued)
    d = decide(state, Observation(ready=14, signals={"queueDepth": 0.0}, arrival_rate=0.0), sp, NOW)
    assert (d.replicas, d.rule) == want, d.reason


def test_decide_records_a_queue_older_than_the_bound():
    """The first decision that sees a queue only notes when it began; the next one, more
    than the 2 s wait bound later and still seeing it, adds (now, its largest
    recommendation) to the state. A queue gone resets the run."""
    obs = Observation(ready=4, signals={"queueDepth": 2.0}, arrival_rate=1.0)
    first = decide(OLD, obs, spec(), NOW)
    assert (first.state.queued, first.state.queue_since) == ((), NOW)
    second = decide(first.state, obs, spec(), NOW + 15)
    # queueDepth target capped at 2 s x 0.5 = 1: ceil(4 x 2 / 1) = 8
    assert second.state.queued[-1] == (NOW + 15, second.replicas) and second.replicas >= 8
    assert second.state.queue_since == NOW
    gone = decide(second.state, Observation(ready=8, signals={"queueDepth": 0.0}, arrival_rate=1.0), spec(), NOW + 30)
    assert gone.state.queue_since is None and gone.state.queued == second.state.queued


def test_decide_keeps_the_first_decisions_ask():
    """A burst's backlog is read at the run's first decision, which asks for its replicas at
    once; 15 s later the queue is smaller. The first ask is the floor, recorded at its time."""
    spike = decide(OLD, Observation(ready=4, signals={"queueDepth": 5.0}, arrival_rate=1.0), spec(), NOW)
    # queueDepth target capped at 2 s x 0.5 = 1: ceil(4 x 5 / 1) = 20
    assert spike.replicas == 20 and spike.state.queue_first == (NOW, 20)
    later = decide(spike.state, Observation(ready=20, signals={"queueDepth": 0.1}, arrival_rate=1.0), spec(), NOW + 15)
    # ceil(20 x 0.1 / 1) = 2 now, the queueing rule a few more: the kept peaks are (NOW, 20), then this ask
    assert later.state.queued[0] == (NOW, 20) and later.state.queued[-1][1] < 20
    assert later.state.queue_first is None
    calm = decide(later.state, Observation(ready=20, signals={"queueDepth": 0.0}, arrival_rate=0.0), spec(), NOW + 400)
    # 400 s on, the 300 s scale-down window is past; 400 < 600: held at 20
    assert (calm.replicas, calm.rule) == (20, QUEUED_HOLD), calm.reason


@pytest.mark.parametrize("name,queued,since,first,queue,n,want_kept,want_since,want_first", [
    # a blip: requests seen waiting for the first time, 0 s <= the 2 s bound: nothing recorded,
    # its peak 9 waits in queue_first
    ("blip", (), None, None, 1.0, 9, (), NOW, (NOW, 9)),
    # waiting since 985: 1000 - 985 = 15 s > 2 s: the peak 9 is recorded
    ("persisted", (), 985.0, None, 1.0, 9, ((NOW, 9),), 985.0, None),
    # waiting since 999: 1 s <= 2 s, not yet; 9 >= the waiting 7 at 999 takes its place
    ("within-bound", (), 999.0, (999.0, 7), 1.0, 9, (), 999.0, (NOW, 9)),
    # within the bound, a smaller ask (5 < 7) leaves the waiting peak as it was
    ("within-bound-smaller", (), 999.0, (999.0, 7), 1.0, 5, (), 999.0, (999.0, 7)),
    # the run's first decision at 985 asked 30 (the backlog at once); at 1000, 15 s > 2 s, it is
    # recorded at its own time beside the 9 asked now: floor 30 until 985 + 600
    ("first-recorded", (), 985.0, (985.0, 30), 1.0, 9, ((985.0, 30), (NOW, 9)), 985.0, None),
    # the same with a first ask 6 <= 9: the later 9 outlives it, only it stays
    ("first-dominated", (), 985.0, (985.0, 6), 1.0, 9, ((NOW, 9),), 985.0, None),
    # no queue now: the run ends, its unrecorded peak with it (a blip); what was kept stays
    ("queue-gone", ((900.0, 12),), 985.0, (999.0, 30), 0.0, 9, ((900.0, 12),), None, None),
    # a missed scrape (queue unknown): the run since 985 goes on, nothing recorded now
    ("scrape-missed", (), 985.0, (999.0, 30), None, 9, (), 985.0, (999.0, 30)),
    # the run began at 300 and its first ask (300, 30) waited: 1000 - 300 = 700 s >= 600 s, too
    # old to be a floor now: only the 9 asked now is recorded
    ("first-too-old", (), 300.0, (300.0, 30), 1.0, 9, ((NOW, 9),), 300.0, None),
    # no run yet and the scrape missed (queue unknown): it starts nothing, records nothing
    ("missed-before-a-run", (), None, None, None, 9, (), None, None),
    # 1000 - 350 = 650 s >= 600 s: expired
    ("expired", ((350.0, 12),), None, None, 0.0, 9, (), None, None),
    # (900, 7) <= the later 9: it can never be the floor, dropped; (800, 12) > 9 stays
    ("dominated-dropped", ((800.0, 12), (900.0, 7)), 985.0, None, 1.0, 9, ((800.0, 12), (NOW, 9)), 985.0, None),
    # (800, 9) and the new 9 at 1000: the later one outlives it, only it stays
    ("equal-dropped", ((800.0, 9),), 985.0, None, 1.0, 9, ((NOW, 9),), 985.0, None),
])
def test_queued_kept(name, queued, since, first, queue, n, want_kept, want_since, want_first):
    state = ScaleState(started_at=0.0, queued=queued, queue_since=since, queue_first=first)
    obs = Observation(ready=4, signals={"queueDepth": queue})
    got = queued_kept(state, Rules((rec("signal:queueDepth", n),)), obs, spec(), NOW)
    assert got == (want_kept, want_since, want_first)


def test_queued_kept_stays_small_under_a_long_queue():
    """An hour of 5 s decisions, all queueing, with the peak falling then rising: the kept
    peaks are only those no later one outlives, never one per decision."""
    state = ScaleState(started_at=0.0)
    obs = Observation(ready=4, signals={"queueDepth": 1.0})
    for i in range(720):
        n = 30 - (i % 60) // 3  # 30 down to 11, again every 5 minutes
        kept, since, first = queued_kept(state, Rules((rec("signal:queueDepth", n),)), obs, spec(), 5.0 * i)
        state = ScaleState(started_at=0.0, queued=kept, queue_since=since, queue_first=first)
        assert len(kept) <= 21
    assert [n for _, n in state.queued] == sorted((n for _, n in state.queued), reverse=True)
