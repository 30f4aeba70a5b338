"""Lease-based leader election (coordination.k8s.io/v1), as client-go does it.

A candidate takes the Lease when it is free or when its record has not changed for
`lease_duration_s` as seen on this process's own monotonic clock (clocks of two
machines are never compared). The leader renews every `retry_period_s`; if it cannot
renew within `renew_deadline_s` it stops calling itself leader, before any other
candidate can take over (renew_deadline < lease_duration), so two never act at once.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from scheduler.kube.client import raw
from scheduler.names import namespaced_path

log = logging.getLogger(__name__)


def _micro_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api: ApiClient, namespace: str, name: str, identity: str, *,
                 lease_duration_s: float = 15.0, renew_deadline_s: float = 10.0, retry_period_s: float = 2.0,
                 on_change: Callable[[bool], None] | None = None, monotonic: Callable[[], float] = time.monotonic):
        if not retry_period_s < renew_deadline_s < lease_duration_s:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.lease_duration_s, self.renew_deadline_s, self.retry_period_s = lease_duration_s, renew_deadline_s, retry_period_s
        self.on_change = on_change
        self.monotonic = monotonic
        self._renewed_at = -1e18  # monotonic time of our last successful renewal
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._leader = False
        self.path = namespaced_path("/apis/coordination.k8s.io/v1", namespace, "leases", name)

    def is_leader(self) -> bool:
        return self._leader and self.monotonic() - self._renewed_at < self.renew_deadline_s

    @property
    def holder(self) -> str | None:
        return self._observed[0] if self._observed else None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ok = self.try_acquire_or_renew()
            except Exception as exc:  # API unreachable: keep trying, lose leadership by deadline
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                ok = False
            if ok:
                self._renewed_at = self.monotonic()
            self._set(self.is_leader() if self._leader else ok)
            stop.wait(self.retry_period_s)
        self.release()

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            log.info("%s %s leadership of lease %s/%s", self.identity, "acquired" if leader else "lost",
                     self.namespace, self.name)
            if self.on_change:
                self.on_change(leader)

    def _body(self, spec: dict[str, Any], rv: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if rv:
            meta["resourceVersion"] = rv
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    def try_acquire_or_renew(self) -> bool:
        now = datetime.now(timezone.utc)
        renewed = _micro_time(now)
        status, lease = raw(self.api, "GET", self.path)
        spec_new: dict[str, Any] = {"holderIdentity": self.identity,
                                    "leaseDurationSeconds": int(self.lease_duration_s), "renewTime": renewed}
        if status == 404:
            spec_new.update(acquireTime=_micro_time(now), leaseTransitions=0)
            try:
                raw(self.api, "POST", namespaced_path("/apis/coordination.k8s.io/v1", self.namespace, "leases"),
                    self._body(spec_new, None))
            except ApiException as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity") or "", spec.get("renewTime") or "")
        mono = self.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, mono
        holder = record[0]
        expired = mono - self._observed_at >= float(spec.get("leaseDurationSeconds") or self.lease_duration_s)
        if holder and holder != self.identity and not expired:
            return False
        if holder == self.identity:
            spec_new["acquireTime"] = spec.get("acquireTime") or _micro_time(now)
            spec_new["leaseTransitions"] = spec.get("leaseTransitions") or 0
        else:
            spec_new["acquireTime"] = _micro_time(now)
            spec_new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            raw(self.api, "PUT", self.path, self._body(spec_new, lease["metadata"]["resourceVersion"]))
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote first
                return False
            raise
        self._observed, self._observed_at = (self.identity, renewed), mono
        return True

    def release(self) -> None:
        """Give the lease up on a clean shutdown, so a standby takes over at once."""
        if not self._leader:
            return
        try:
            status, lease = raw(self.api, "GET", self.path)
            if status == 200 and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = dict(lease["spec"], holderIdentity=None, leaseDurationSeconds=1)
                raw(self.api, "PUT", self.path, self._body(spec, lease["metadata"]["resourceVersion"]))
        except Exception as exc:
            log.warning("releasing lease %s/%s: %s", self.namespace, self.name, exc)
        self._set(False)
