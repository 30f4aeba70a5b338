"""Lease leader election against the real API server."""
from __future__ import annotations

import threading
import time

import pytest

from scheduler.kube.leader import LeaderElector
from tests.helpers import eventually

pytestmark = pytest.mark.integration


def elector(cluster, namespace, identity, **kw) -> LeaderElector:
    return LeaderElector(cluster.api_client(), namespace, "test-lease", identity,
                         lease_duration_s=3, renew_deadline_s=2, retry_period_s=0.5, **kw)


def test_one_leader_then_takeover_within_the_lease_duration(cluster, namespace):
    a, b = elector(cluster, namespace, "a"), elector(cluster, namespace, "b")
    stop_a, stop_b = threading.Event(), threading.Event()
    ta = threading.Thread(target=a.run, args=(stop_a,), daemon=True)
    ta.start()
    eventually(a.is_leader, timeout=10, what="a leads")
    threading.Thread(target=b.run, args=(stop_b,), daemon=True).start()
    time.sleep(2)
    assert a.is_leader() and not b.is_leader()  # never two at once
    # a dies without releasing (as a killed process would): stop its loop but skip release
    a.release = lambda: None  # type: ignore[method-assign]
    stop_a.set()
    ta.join()
    died = time.monotonic()
    eventually(b.is_leader, timeout=10, interval=0.1, what="b takes over")
    took = time.monotonic() - died
    # b must first see the record unchanged for a lease duration (3 s), then write: within 3 + 2 periods
    assert 2.0 <= took <= 3 + 2 * 0.5 + 1, took
    assert not a.is_leader()
    stop_b.set()


def test_clean_shutdown_hands_over_at_once(cluster, namespace):
    a, b = elector(cluster, namespace, "a"), elector(cluster, namespace, "b")
    stop_a, stop_b = threading.Event(), threading.Event()
    ta = threading.Thread(target=a.run, args=(stop_a,), daemon=True)
    ta.start()
    eventually(a.is_leader, timeout=10, what="a leads")
    threading.Thread(target=b.run, args=(stop_b,), daemon=True).start()
    stop_a.set()
    ta.join()
    # released lease: holder cleared, so b takes it on its next try after seeing it change
    eventually(b.is_leader, timeout=5, interval=0.1, what="b takes over")
    stop_b.set()


def test_bad_timings_are_refused(cluster):
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElector(cluster.api_client(), "default", "x", "me", lease_duration_s=5, renew_deadline_s=6)
