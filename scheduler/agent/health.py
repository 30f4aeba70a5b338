"""Whether the agent is alive, for its /healthz (the DaemonSet's liveness probe).

/metrics answers as long as the HTTP thread runs, even when the tick loop is stuck
(a hung NVML call, a deadlock): kubelet would never restart such an agent, and the
node's report would silently go stale. /healthz answers 503 once the last finished
tick is older than `stale_after_s`, so kubelet restarts it.
"""
from __future__ import annotations

DEFAULT_STALE_AFTER_S = 300.0


def liveness(started_at: float, last_tick_at: float | None, now: float,
             stale_after_s: float = DEFAULT_STALE_AFTER_S) -> tuple[bool, str]:
    """(alive, why). Times are seconds on one monotonic clock. Before the first tick the
    start counts as one, so a slow start (NVML, a large cache) has the same allowance."""
    last = started_at if last_tick_at is None else last_tick_at
    age = now - last
    what = "no tick yet, started" if last_tick_at is None else "last tick"
    if age > stale_after_s:
        return False, f"{what} {age:.0f}s ago (limit {stale_after_s:.0f}s): the agent's loop is stuck"
    return True, f"ok ({what} {max(age, 0.0):.1f}s ago)"
