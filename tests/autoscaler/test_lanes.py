"""autoscaler.lanes: a slow job neither holds the tick past one budget nor keeps the
other jobs from their worker slots, and is skipped until it ends."""
from __future__ import annotations

import threading
import time

from autoscaler.lanes import Lanes


def test_a_slow_job_costs_the_others_one_budget_at_most():
    lanes = Lanes(workers=1)
    release = threading.Event()
    ran: list[str] = []
    t0 = time.monotonic()
    out = lanes.run([("slow", lambda: release.wait(30)), ("fast", lambda: ran.append("fast"))], budget_s=0.3)
    took = time.monotonic() - t0
    # one worker: "fast" was queued behind "slow" until slow overran and gave up its slot
    assert out.overran == ["slow"] and "slow" not in out.finished
    assert took < 5
    time.sleep(0.2)
    assert ran == ["fast"]
    # next tick: slow is still running, so it is skipped; fast runs again
    out2 = lanes.run([("slow", lambda: ran.append("slow-again")), ("fast", lambda: ran.append("fast"))], budget_s=0.3)
    assert out2.busy == ["slow"] and out2.finished == ["fast"]
    assert "slow" in lanes.running()
    release.set()
    time.sleep(0.2)
    assert lanes.running() == {}
    out3 = lanes.run([("slow", lambda: ran.append("slow-again"))], budget_s=1)
    assert out3.finished == ["slow"] and ran[-1] == "slow-again"


def test_many_slow_jobs_end_the_tick_within_one_budget():
    lanes = Lanes(workers=2)
    release = threading.Event()
    t0 = time.monotonic()
    out = lanes.run([(f"s{i}", lambda: release.wait(30)) for i in range(8)], budget_s=0.3)
    took = time.monotonic() - t0
    release.set()
    print(f"8 hung jobs, 2 workers, budget 0.3 s: tick took {took:.2f} s")
    assert set(out.overran) | set(out.late) == {f"s{i}" for i in range(8)}
    assert took < 3  # one budget (plus scheduling), not 8 / 2 budgets


def test_stop_ends_the_wait():
    lanes = Lanes(workers=1)
    stop = threading.Event()
    release = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    lanes.run([("slow", lambda: release.wait(30))], budget_s=60, stop=stop)
    assert time.monotonic() - t0 < 5
    release.set()
