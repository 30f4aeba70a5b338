"""Which extender may act: only the one beside the kube-scheduler that holds the Lease,
once it has seen every bind of the leaders before, and only while that Lease is fresh.

In the chart each kube-scheduler replica has an extender sidecar; the replicas elect a
leader with a Lease and only the leader schedules. Every sidecar keeps its informers
running, but a standby's pod watch may lag behind the old leader's last binds, and a
deposed leader's extender may still hold a bind in flight. So:

- a new term (holderIdentity and acquireTime as this pod's kube-scheduler wrote them)
  starts with a fresh, quorum LIST of the bound pods; no verb is answered before it has
  been applied (`caught_up`);
- a bind is sent only while the Lease's renewTime is within kube-scheduler's own
  renewDeadline. kube-scheduler stops leading past that deadline, and a standby takes
  the Lease only a whole leaseDuration after the last renewal it saw, so a bind sent in
  time commits before the next leader's LIST (if the API server takes it in under
  leaseDuration - renewDeadline, 5 s with the defaults).

`decide` is the rule (pure); `Leadership` feeds it from the Lease watch.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from scheduler.timestamps import parse_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Term:
    """One leader's tenure: a kube-scheduler restarts with a new identity, and a re-acquired
    Lease gets a new acquireTime."""
    holder: str
    acquired: str


@dataclass(frozen=True)
class LeaseView:
    term: Term
    renewed: float  # renewTime, seconds since the epoch


def lease_view(obj: dict[str, Any]) -> LeaseView | None:
    """The Lease as the API returns it; None when it names no holder or no readable times
    (a Lease anyone with write access could have mangled: nothing acts on it)."""
    spec = obj.get("spec") if isinstance(obj, dict) else None
    if not isinstance(spec, dict):
        return None
    holder, acquired = spec.get("holderIdentity"), spec.get("acquireTime")
    renewed = parse_time(spec.get("renewTime"))
    if not isinstance(holder, str) or not holder or not isinstance(acquired, str) or renewed is None:
        return None
    return LeaseView(Term(holder, acquired), renewed)


def decide(lease: LeaseView | None, identity: str, caught_up: Term | None, now: float,
           renew_deadline_s: float) -> tuple[bool, str]:
    """Whether this pod's extender may answer verbs now, and why not. ``identity`` is this
    pod's host name: kube-scheduler's Lease identity is ``<hostname>_<uuid>``."""
    if lease is None:
        return False, "no readable Lease yet: this pod's kube-scheduler is not known to lead"
    if not lease.term.holder.startswith(identity + "_"):
        return False, f"kube-scheduler {lease.term.holder[:80]} leads, not this pod's ({identity})"
    if caught_up != lease.term:
        return False, "catching up: listing the bound pods again since this pod's kube-scheduler took the Lease"
    late = now - lease.renewed
    if late > renew_deadline_s:
        return False, (f"the Lease was last renewed {late:.1f}s ago (renewDeadline {renew_deadline_s:g}s): "
                       "this pod's kube-scheduler may have lost it")
    return True, "this pod's kube-scheduler leads"


class Leadership:
    """Fed by a watch on the one Lease; starts the catch-up LIST when a term of this pod begins.
    ``relist`` blocks until a LIST begun after the call has been applied (True) or gives up (False)."""

    def __init__(self, identity: str, renew_deadline_s: float, relist: Callable[[], bool],
                 clock: Callable[[], float] = time.time):
        self.identity = identity
        self.renew_deadline_s = renew_deadline_s
        self._relist = relist
        self.clock = clock
        self._lock = threading.Lock()
        self._lease: LeaseView | None = None
        self._caught_up: Term | None = None
        self._catching: Term | None = None
        self.terms_caught_up = 0
        self.last_catch_up_s = 0.0

    def on_lease(self, typ: str, obj: dict[str, Any]) -> None:
        view = None if typ == "DELETED" else lease_view(obj)
        with self._lock:
            self._lease = view
            start = (view is not None and view.term.holder.startswith(self.identity + "_")
                     and view.term not in (self._caught_up, self._catching))
            if start and view is not None:
                self._catching = view.term
        if start and view is not None:
            threading.Thread(target=self._catch_up, args=(view.term,), name="leader-catch-up", daemon=True).start()

    def _catch_up(self, term: Term) -> None:
        t0 = time.monotonic()
        while True:
            ok = False
            try:
                ok = self._relist()
            except Exception:  # noqa: BLE001 - the API server may be away: try again
                log.exception("catch-up LIST for term %s failed", term.holder)
            with self._lock:
                current = self._lease.term if self._lease else None
                if current != term:  # the term ended while we listed: nothing to serve
                    self._catching = None
                    return
                if ok:
                    self._caught_up, self._catching = term, None
                    self.terms_caught_up += 1
                    self.last_catch_up_s = time.monotonic() - t0
                    log.info("leader %s: bound pods listed again in %.2fs; answering verbs", term.holder,
                             self.last_catch_up_s)
                    return
            time.sleep(0.5)

    def may_act(self) -> tuple[bool, str]:
        with self._lock:
            lease, caught_up = self._lease, self._caught_up
        return decide(lease, self.identity, caught_up, self.clock(), self.renew_deadline_s)
