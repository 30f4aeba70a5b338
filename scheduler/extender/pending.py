"""The pods waiting for gpusched's kube-scheduler, as the API server last sent them.

/bind checks the pod it is asked to bind against the API server's copy. Reading that copy
with a GET per bind put one API round trip between kube-scheduler's choice and the
reservation, and cost the API server a read per pod. An informer of the pending pods
(spec.nodeName empty, spec.schedulerName ours) keeps the same copy in memory: a bind
checks it and sends its resourceVersion as a precondition of the Binding, so the API
server refuses the bind (409) if the pod changed since the copy the checks read. A pod the
informer has not seen yet, or not with the UID asked for, is read with a GET as before.
"""
from __future__ import annotations

import threading
from typing import Any

from scheduler.core.objects import pod_key


def pending_selector(scheduler_name: str) -> str:
    """The field selector of the pods a bind may be asked for (the name is a DNS subdomain:
    no comma or operator can ride in it)."""
    return f"spec.nodeName=,spec.schedulerName={scheduler_name}"


class PendingPods:
    """namespace/name -> the pod, for pods not yet bound. Bound ones leave through the
    watch (a pod that no longer matches the field selector comes as DELETED)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, dict[str, Any]] = {}

    def set_pods(self, pods: list[dict[str, Any]]) -> None:
        fresh = {pod_key(p): p for p in pods if not (p.get("spec") or {}).get("nodeName")}
        with self._lock:
            self._pods = fresh

    def on_pod(self, typ: str, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        with self._lock:
            if typ == "DELETED" or (pod.get("spec") or {}).get("nodeName"):
                self._pods.pop(key, None)
            else:
                self._pods[key] = pod

    def get(self, key: str) -> dict[str, Any] | None:
        """The pod as last seen pending, or None; the caller must not change it."""
        return self._pods.get(key)

    def __len__(self) -> int:
        return len(self._pods)
