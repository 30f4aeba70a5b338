"""Scale to zero: the scale_to_zero phase (a table) and decide end to end."""
from __future__ import annotations

import pytest

from autoscaler.policy import (ACTIVATION, IDLE_HOLD, SCALE_TO_ZERO, UNKNOWN_HOLD, Observation, Verdict, decide,
                               in_use, initial_state, scale_to_zero)
from autoscaler.spec import parse_spec

ACT = {"labels": {"destination_service_name": "llm"}}


def spec(**kw):
    d = {"scaleTargetRef": {"name": "llm"}, "minReplicas": 0, "maxReplicas": 8, "activation": ACT,
         "signals": [{"type": "queueDepth", "target": 5}], "coldStartSeconds": 45}
    d.update(kw)
    return parse_spec(d)


def obs(ready, pending=0, act=None, arrival=None, queue=None, wake=None):
    return Observation(ready=ready, pending=pending, signals={"queueDepth": queue}, arrival_rate=arrival,
                       activation=act, wake=wake)


S = spec()  # idle window max(300, 5*45=225) = 300 s
NOW = 10_000.0


@pytest.mark.parametrize("name, o, rules_say, last_active, blocked, want, rule, last", [
    # from zero: the gateway counted a request -> 1
    ("wake", obs(0, act=2), 0, NOW - 900, False, 1, ACTIVATION, NOW),
    # at zero, no request (0 counted): stay at 0
    ("asleep", obs(0, act=0), 0, NOW - 900, False, 0, "r", NOW - 900),
    # at zero, the counter unknown: stay (nothing says a request came)
    ("asleep-unknown", obs(0, act=None), 0, NOW - 900, True, 0, "r", NOW - 900),
    # serving, idle 900 s >= 300 s, nothing counted, arriving or queued -> 0
    ("idle-long", obs(1, act=0, arrival=0, queue=0), 0, NOW - 900, False, 0, SCALE_TO_ZERO, NOW - 900),
    # serving, idle 299 s < 300 s: the rules' 0 raised to 1
    ("idle-short", obs(1, act=0, arrival=0, queue=0), 0, NOW - 299, False, 1, IDLE_HOLD, NOW - 299),
    # idle exactly the window (300 >= 300) -> 0, even though the rules (stabilised) still say 2
    ("idle-window-overrides", obs(2, act=0, arrival=0, queue=0), 2, NOW - 300, False, 0, SCALE_TO_ZERO, NOW - 300),
    # a request counted now: in use, the rules' 0 raised to 1, last use = now
    ("request-now", obs(1, act=1, arrival=0, queue=0), 0, NOW - 900, False, 1, IDLE_HOLD, NOW),
    # the gateway says 0 but a request waits in the queue (a long request Istio counts at its end)
    ("queue-waits", obs(1, act=0, arrival=0, queue=0.5), 1, NOW - 900, False, 1, "r", NOW),
    # the counter unknown while serving: never to zero on missing data
    ("serving-unknown", obs(1, act=None, arrival=0, queue=0), 0, NOW - 900, False, 1, IDLE_HOLD, NOW - 900),
    # another input unknown (blocked): same
    ("serving-blocked", obs(1, act=0, arrival=None, queue=0), 0, NOW - 900, True, 1, IDLE_HOLD, NOW - 900),
    # a fresh daemon (no last use): idle counted from its start (NOW-100): 100 s < 300 s
    ("fresh-daemon", obs(1, act=0, arrival=0, queue=0), 0, None, False, 1, IDLE_HOLD, None),
    # the activation endpoint took a wake 0.4 s ago, the counter has not seen the request yet: 0 -> 1
    ("wake-endpoint", obs(0, act=0, wake=NOW - 0.4), 0, NOW - 900, False, 1, ACTIVATION, NOW),
    # ... with the counter unknown (no series yet: Istio creates it on its first request)
    ("wake-counter-unknown", obs(0, act=None, wake=NOW - 0.4), 0, NOW - 900, True, 1, ACTIVATION, NOW),
    # a wake 60 s ago is still within the counter's 1 m window (60 <= 60): in use
    ("wake-60s", obs(0, act=0, wake=NOW - 60), 0, NOW - 900, False, 1, ACTIVATION, NOW),
    # a wake 61 s ago is stale: asleep it stays
    ("wake-61s", obs(0, act=0, wake=NOW - 61), 0, NOW - 900, False, 0, "r", NOW - 900),
    # serving, idle 900 s by the counter, and a wake 10 s ago: a wake counts only at zero (anyone who
    # reaches the endpoint could send one every minute), so 900 >= 300 -> 0; a real request the counter sees
    ("wake-while-serving-is-not-use", obs(1, act=0, arrival=0, queue=0, wake=NOW - 10), 0, NOW - 900, False, 0,
     SCALE_TO_ZERO, NOW - 900),
    # a wake never asks for more than 1: the rules' 3 (e.g. a queue) stand as they are
    ("wake-rules-more", obs(0, act=0, wake=NOW), 3, NOW - 900, False, 3, "r", NOW),
])
def test_scale_to_zero_phase(name, o, rules_say, last_active, blocked, want, rule, last):
    v, got_last = scale_to_zero(Verdict(rules_say, "r", "rules"), o, S, last_active, NOW, NOW - 100, blocked)
    assert (v.replicas, v.rule, got_last) == (want, rule, last)


def test_min_replicas_one_is_untouched():
    s1 = spec(minReplicas=1)
    v = Verdict(1, "r", "rules")
    assert scale_to_zero(v, obs(1, act=0, arrival=0, queue=0), s1, NOW - 9999, NOW, 0.0, False) == (v, NOW - 9999)


@pytest.mark.parametrize("o, want", [
    (obs(0, act=0), False),
    (obs(0, act=None), None),
    (obs(0, act=None, arrival=0.1), True),
    (obs(1, act=0, queue=float("nan")), False),  # a NaN queue is not a request
    (obs(1, act=float("inf")), None),  # an infinite count is invalid: unknown, not in use
])
def test_in_use(o, want):
    assert in_use(o, S) == want


@pytest.mark.parametrize("wake, now, want", [
    (NOW - 30, NOW, True),  # 30 s <= 60 s
    (NOW - 30, None, False),  # no time to compare with: the counter alone decides (here 0)
    (NOW + 5, NOW, True),  # stamped by a clock that stepped back: a wake all the same
    (float("nan"), NOW, False),  # invalid: ignored
])
def test_in_use_with_a_wake(wake, now, want):
    assert in_use(obs(0, act=0, wake=wake), S, now) == want


def test_decide_sleeps_and_wakes():
    """decide through an idle spell: 1 serving -> 0 after the window -> 1 on the first request."""
    s = spec(scaleToZeroAfterSeconds=60, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    st = initial_state()
    d = decide(st, obs(1, act=3, arrival=0.05, queue=0), s, 0.0)
    assert d.replicas == 1
    st = d.state
    for t in (15.0, 30.0, 45.0):
        d = decide(st, obs(1, act=0, arrival=0, queue=0), s, t)
        assert (d.replicas, d.rule) == (1, IDLE_HOLD), d.reason
        st = d.state
    d = decide(st, obs(1, act=0, arrival=0, queue=0), s, 60.0)
    assert (d.replicas, d.rule, d.warm) == (0, SCALE_TO_ZERO, 0), d.reason
    st = d.state
    # at zero the pods' signals are gone: the rules hold on unknown data, the gateway says nothing
    d = decide(st, obs(0, act=0), s, 75.0)
    assert (d.replicas, d.rule) == (0, UNKNOWN_HOLD)
    d = decide(d.state, obs(0, act=1), s, 90.0)
    assert (d.replicas, d.rule, d.cold_start) == (1, ACTIVATION, 1), d.reason
    assert "1 requests at the gateway -> 1 from zero" in d.reason


def test_warm_pool_is_empty_at_zero():
    s = spec(warmReplicas=2, scaleToZeroAfterSeconds=0, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    d = decide(initial_state(), obs(1, act=0, arrival=0, queue=0), s, 0.0)
    assert (d.replicas, d.warm) == (0, 0)
