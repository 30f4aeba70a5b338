"""A load that a demo or test changes at run time, fed into a running FleetSimulator."""
from __future__ import annotations

import threading


class Load:
    """Evenly spaced requests (100 prompt + 50 output tokens) for one workload of the
    fleet simulator, at a rate that can be changed at any time."""

    def __init__(self, sim, workload, rate: float = 0.0):
        self.sim, self.key, self.rate = sim, workload.key, float(rate)
        self._next: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-load", daemon=True)
        self._thread.start()

    def set_rate(self, rate: float) -> None:
        with self.sim.lock:
            self.rate, self._next = float(rate), None

    def _run(self) -> None:
        from benchmarks.fleet.model import Request
        while not self._stop.wait(0.05):
            with self.sim.lock:
                now = max(self.sim.fleet.now, self.sim.sim_now())
                if self.rate <= 0:
                    self._next = None
                    continue
                if self._next is None or self._next < now:
                    self._next = now
                while self._next < now + 0.3:
                    self.sim.fleet.submit(self.key, Request(self._next, 100, 50))
                    self._next += 1.0 / self.rate

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
