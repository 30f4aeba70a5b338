"""Run one job per object, each within a time budget, none waiting on another.

A tick hands ``Lanes.run`` a job per InferenceAutoscaler. Each runs in its own
thread, at most ``workers`` at once. The tick waits ``budget_s`` at most, and for each
job up to ``budget_s`` from that job's start; a job still running then is
*overrunning*: the tick stops
waiting for it, its worker slot goes to the next job, and the object is skipped by
later ticks until the job ends (a Python thread cannot be stopped, so it is left to
finish; its threads are daemons, so they never hold the process up at exit). One
object that is slow, whatever the cause (a tenant's heavy query, a hung Prometheus,
a bug), costs the others at most one budget, once.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class _Job:
    key: str
    fn: Callable[[], object]
    started: float | None = None  # when it got a slot (monotonic)
    holds_slot: bool = False
    overran: bool = False
    done: bool = False


@dataclass
class Outcome:
    finished: list[str] = field(default_factory=list)  # ran and ended within the budget
    overran: list[str] = field(default_factory=list)  # still running past the budget (newly)
    busy: list[str] = field(default_factory=list)  # skipped: an earlier job of theirs is still running
    late: list[str] = field(default_factory=list)  # not done when the tick stopped waiting, within budget yet


class Lanes:
    def __init__(self, workers: int, clock: Callable[[], float] = time.monotonic):
        self.workers = max(1, workers)
        self.clock = clock
        self._cond = threading.Condition()
        self._free = self.workers
        self._running: dict[str, _Job] = {}  # key -> job not done yet (this tick's or an earlier one's)

    def running(self) -> dict[str, float]:
        """Objects whose job is still running: key -> seconds since it started."""
        now = self.clock()
        with self._cond:
            return {k: now - j.started for k, j in self._running.items() if j.started is not None}

    def _work(self, job: _Job, stop: threading.Event) -> None:
        with self._cond:
            while self._free <= 0 and not stop.is_set():
                self._cond.wait(0.1)
            if stop.is_set():
                job.done = True
                self._running.pop(job.key, None)
                self._cond.notify_all()
                return
            self._free -= 1
            job.holds_slot, job.started = True, self.clock()
        try:
            job.fn()
        finally:
            with self._cond:
                job.done = True
                if job.holds_slot:
                    self._free += 1
                    job.holds_slot = False
                if self._running.get(job.key) is job:
                    del self._running[job.key]
                self._cond.notify_all()

    def run(self, jobs: list[tuple[str, Callable[[], object]]], budget_s: float,
            stop: threading.Event | None = None) -> Outcome:
        stop = stop or threading.Event()
        out = Outcome()
        mine: list[_Job] = []
        with self._cond:
            for key, fn in jobs:
                if key in self._running:
                    out.busy.append(key)
                    continue
                job = self._running[key] = _Job(key, fn)
                mine.append(job)
        for job in mine:
            threading.Thread(target=self._work, args=(job, stop), name=f"ias {job.key}"[:60], daemon=True).start()
        deadline = self.clock() + budget_s  # the tick as a whole waits one budget at most
        with self._cond:
            while True:
                now = self.clock()
                waiting = False
                next_due = now + 0.1
                for job in mine:
                    if job.done or job.overran:
                        continue
                    if job.started is not None and now - job.started >= budget_s:
                        job.overran = True
                        out.overran.append(job.key)
                        if job.holds_slot:  # its slot goes to the next job
                            job.holds_slot = False
                            self._free += 1
                            self._cond.notify_all()
                        continue
                    waiting = True
                    if job.started is not None:
                        next_due = min(next_due, job.started + budget_s)
                if not waiting or stop.is_set() or now >= deadline:
                    break
                self._cond.wait(max(0.001, min(next_due, deadline) - now))
            for job in mine:
                if job.done and not job.overran:
                    out.finished.append(job.key)
                elif not job.done and not job.overran:
                    out.late.append(job.key)
        return out
