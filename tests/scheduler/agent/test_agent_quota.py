"""The cache quota's LRU choice, as a table: each row shows the sizes, ages and the sum."""
from __future__ import annotations

import pytest

from scheduler.agent.quota import CachedUse, plan_eviction

A, B, C = CachedUse("org/a", 40, last_used=100.0), CachedUse("org/b", 30, 200.0), CachedUse("org/c", 20, 300.0)


@pytest.mark.parametrize("cached, quota, incoming, protected, evict, fits", [
    # 40+30+20 = 90 <= 100: nothing to do
    ([A, B, C], 100, 0, (), (), True),
    # 90 + 10 = 100 <= 100: still fits exactly
    ([A, B, C], 100, 10, (), (), True),
    # 90 + 25 = 115 > 100: need 15; a (oldest, 40) frees 40
    ([A, B, C], 100, 25, (), ("org/a",), True),
    # need 15, a in use: b (next oldest, 30) frees 30
    ([A, B, C], 100, 25, {"org/a"}, ("org/b",), True),
    # 90 + 50 = 140 > 100: need 40; a alone frees 40
    ([A, B, C], 100, 50, (), ("org/a",), True),
    # need 41: a (40) then b (30) = 70
    ([A, B, C], 100, 51, (), ("org/a", "org/b"), True),
    # need 41, a in use: b (30) + c (20) = 50
    ([A, B, C], 100, 51, {"org/a"}, ("org/b", "org/c"), True),
    # need 41, a and b in use: c frees only 20 < 41, so nothing is evicted
    ([A, B, C], 100, 51, {"org/a", "org/b"}, (), False),
    # quota lowered to 50, nothing incoming: need 40 -> a
    ([A, B, C], 50, 0, (), ("org/a",), True),
    # everything in use and over quota: never evicted
    ([A, B, C], 10, 0, {"org/a", "org/b", "org/c"}, (), False),
    # equal ages: by name, so the choice is stable
    ([CachedUse("org/y", 10, 5.0), CachedUse("org/x", 10, 5.0)], 10, 0, (), ("org/x",), True),
    # an empty cache and a model larger than the quota
    ([], 10, 11, (), (), False),
])
def test_plan_eviction(cached, quota, incoming, protected, evict, fits):
    plan = plan_eviction(cached, quota_bytes=quota, incoming_bytes=incoming, protected=protected)
    assert (plan.evict, plan.fits) == (evict, fits), plan.reason
    assert not set(plan.evict) & set(protected)


def test_reasons_show_the_arithmetic():
    plan = plan_eviction([A, B, C], quota_bytes=100, incoming_bytes=51, protected={"org/a", "org/b"})
    assert plan.reason == ("90 cached + 51 incoming > quota 100, and models in use hold 70: evicting all 1 others "
                           "frees only 20 of the 41 needed")


def test_negative_input_is_refused():
    with pytest.raises(ValueError):
        plan_eviction([A], quota_bytes=-1)
