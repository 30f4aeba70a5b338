"""signals.observation: the one pure step from the pool's counts and Prometheus' answers
to the policy's Observation, shared by the daemon and the trace simulator."""
from __future__ import annotations

import pytest

from autoscaler.policy import Observation
from autoscaler.signals import Reading, observation

OK = Reading(3.0, "6 waiting / 2 ready = 3/replica")
DOWN = Reading(None, "Prometheus timed out after 3s")


@pytest.mark.parametrize("readings, arrival, want_signals, want_rate, want_obs_notes, want_notes", [
    # known signal, no SLO (arrival not read): nothing unknown
    ({"queueDepth": OK}, None, {"queueDepth": 3.0}, None, {}, {}),
    # known signal and arrival rate
    ({"queueDepth": OK}, Reading(4.5, "4.5 req/s"), {"queueDepth": 3.0}, 4.5, {}, {}),
    # unknown signal: None in the observation, its reason in both note maps
    ({"queueDepth": DOWN}, None, {"queueDepth": None}, None,
     {"queueDepth": DOWN.reason}, {"queueDepth": DOWN.reason}),
    # unknown arrival rate: None; its reason for the condition only (the policy names it itself)
    ({"queueDepth": OK}, Reading(None, "query returned no series"), {"queueDepth": 3.0}, None,
     {}, {"arrivalRate": "query returned no series"}),
])
def test_observation(readings, arrival, want_signals, want_rate, want_obs_notes, want_notes):
    obs, notes = observation(2, 1, 1, readings, arrival)
    assert obs == Observation(ready=2, pending=1, warm=1, signals=want_signals, arrival_rate=want_rate,
                              notes=want_obs_notes)
    assert notes == want_notes


@pytest.mark.parametrize("recent, want", [
    (None, None),  # not read (--recent-window 0, no SLO, or the 1 m rate unknown)
    (Reading(9.0, "9 req/s"), 9.0),
    (Reading(None, "query returned no series"), None),  # unknown, and not a note: it only adds replicas
])
def test_observation_recent_rate(recent, want):
    obs, notes = observation(2, 0, 0, {"queueDepth": OK}, Reading(4.5, "4.5 req/s"), recent=recent,
                             recent_window_s=30.0)
    assert (obs.arrival_rate, obs.arrival_rate_recent) == (4.5, want)
    # the window travels with a reading, known or not, for the policy's noise margin; none without one
    assert obs.arrival_rate_recent_window_s == (None if recent is None else 30.0)
    assert notes == {} and obs.notes == {}


def test_observation_says_how_many_ready_replicas_a_value_averages():
    few = Reading(12.0, "12 waiting over 1 of 3 ready replicas that report = 12/replica", reporting=1)
    obs, _ = observation(3, 0, 0, {"queueDepth": few, "gpu": OK}, None)
    assert obs.reporting == {"queueDepth": 1}  # "gpu" averages over every ready replica: absent
    obs, _ = observation(3, 0, 0, {"queueDepth": Reading(None, "timed out", reporting=1)}, None)
    assert obs.reporting == {}  # an unknown value averages over nothing
