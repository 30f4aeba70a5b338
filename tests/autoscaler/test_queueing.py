"""autoscaler.queueing: Erlang B/C by the recurrence (small n) and the Poisson form
(large n) agree; the replica search gives what a linear scan gives; and the cost is
bounded for any input, the issue-14 object included."""
from __future__ import annotations

import math
import time

import pytest

from autoscaler.queueing import RECURRENCE_MAX, effective_concurrency, erlang_b, erlang_c, replicas_for_slo, wait_tail


def recurrence(n: int, a: float) -> float:
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
    return b


@pytest.mark.parametrize("n,a,want", [
    (1, 1.0, 0.5),            # a/(1+a)
    (2, 1.0, 0.2),            # (1/2) / (1 + 1 + 1/2)
    (3, 2.0, 0.2105263158),   # (8/6) / (1 + 2 + 2 + 8/6) = 4/19
    (5, 0.0, 0.0),            # no load, no blocking
    (0, 3.0, 1.0),            # no server: everything blocks
])
def test_erlang_b_table(n, a, want):
    assert erlang_b(n, a) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("c,a,want", [
    (2, 1.0, 1 / 3),          # B = 0.2: 0.2 / (1 - 0.5 * 0.8)
    (1, 0.5, 0.5),            # M/M/1: P(wait) = rho
    (3, 3.0, 1.0),            # a >= c: everyone waits
    (4, 0.0, 0.0),
])
def test_erlang_c_table(c, a, want):
    assert erlang_c(c, a) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("mu,s1,max_seqs,want", [
    (1.509, 1.47, 32, 2),     # azure-code's load test: 2.22 -> 2 (prefill-bound: few at once)
    (2.348, 6.31, 32, 15),    # azure-conv: 14.8 -> 15
    (0.493, 39.56, 32, 20),   # 40 s requests, decode-bound: 19.5 -> 20
    (0.025, 40.0, 1, 1),      # one request at a time: mu = 1/s1 -> 1
    (2.0, 100.0, 32, 32),     # 200 -> the server's --max-num-seqs
    (0.1, 2.0, 32, 1),        # 0.2 -> at least 1 server
])
def test_effective_concurrency_is_mu_times_the_time_alone(mu, s1, max_seqs, want):
    assert effective_concurrency(mu, s1, max_seqs) == want


@pytest.mark.parametrize("mu,s1,max_seqs", [(0.0, 1.0, 8), (-1.0, 1.0, 8), (math.inf, 1.0, 8), (1.0, math.nan, 8),
                                            (1.0, 0.0, 8), (1.0, 1.0, 0)])
def test_effective_concurrency_refuses_what_no_load_test_gives(mu, s1, max_seqs):
    with pytest.raises(ValueError):
        effective_concurrency(mu, s1, max_seqs)


@pytest.mark.parametrize("lam,mu,k,want", [
    # 40 s requests, 0.493 req/s at saturation, 0.1 req/s arriving (4 in flight):
    # one server per replica is M/M/1 at rho 0.203, P(wait > 2 s) = 0.203 e^(-(0.493 - 0.1) 2)
    # = 0.092 > 0.01, so 2 replicas; as 20 servers of 40 s, 4.1 erlangs wait with
    # P ~ 6e-9, so 1
    (0.1, 0.493, 1, 2),
    (0.1, 0.493, 20, 1),
])
def test_a_replica_that_batches_long_requests_is_many_servers(lam, mu, k, want):
    c, _ = replicas_for_slo(lam, mu, 0.8, 2.0, 0.99, 32, k)
    assert c == want


@pytest.mark.parametrize("n,a", [
    (RECURRENCE_MAX + 1, 900.0),     # n > a, near the knee
    (2000, 1999.5),                  # rho ~ 1
    (3000, 2400.0),                  # rho 0.8
    (1500, 1800.0),                  # n < a: heavy blocking
    (5000, 100.0),                   # B underflows to ~0
    (4096, 4096 * 0.97),
])
def test_poisson_form_equals_the_recurrence(n, a):
    assert erlang_b(n, a) == pytest.approx(recurrence(n, a), rel=1e-7, abs=1e-300)


def linear_scan(lam, mu, util, wait, pct, cap, slots):
    """The search as it was before: the first c from c_util up that meets the bound."""
    c_util = max(1, math.ceil(lam / mu / util - 1e-9))
    if c_util >= cap:
        return c_util
    for c in range(c_util, cap + 1):
        if wait_tail(c, slots, lam, mu, wait) <= (1 - pct) + 1e-9:
            return c
    return cap


@pytest.mark.parametrize("lam,mu,util,wait,pct,cap,slots", [
    (10, 2, 0.8, 0.5, 0.99, 100, 1),
    (10, 2, 1.0, 0.01, 0.999, 100, 1),    # tight: needs many more than c_util
    (50, 4.5, 0.9, 0.2, 0.99, 64, 4),
    (200, 1, 0.95, 0.05, 0.9999, 1000, 1),
    (3, 0.5, 0.99, 0.001, 0.999999, 8, 16),  # missed at the cap: the cap
    (0.5, 3, 0.8, 1, 0.99, 10, 256),
])
def test_search_equals_the_linear_scan(lam, mu, util, wait, pct, cap, slots):
    assert replicas_for_slo(lam, mu, util, wait, pct, cap, slots)[0] == linear_scan(lam, mu, util, wait, pct, cap, slots)


@pytest.mark.parametrize("lam,mu,slots,cap", [
    (1.0, 1e-6, 4096, 2**31 - 1),      # issue 14, item 7: ~400 s per call before
    (100.0, 0.001, 4096, 10_000),      # the CRD's extremes
    (4e4, 1.0, 4096, 10_000),
    (2000.0, 1.0, 4096, 10_000),       # c_util 2000 < cap: n = 8.2 M servers searched
    (1e6, 1e6, 1, 2**31 - 1),
])
def test_any_input_is_cheap(lam, mu, slots, cap):
    """Work is bounded by design (gallop + bisect, a capped series); the figure is
    printed, and only a gross regression (a scan per replica) could reach the bound."""
    t0 = time.process_time()
    c, text = replicas_for_slo(lam, mu, 1.0, 0.5, 0.99, cap, slots)
    took = time.process_time() - t0
    print(f"replicas_for_slo({lam:g}, {mu:g}, B={slots}, cap={cap}) = {c} in {took * 1000:.1f} ms CPU")
    assert 1 <= c and text
    assert took < 5.0
