"""The pods waiting for gpusched's kube-scheduler, as the API server last sent them.

/bind checks the pod it is asked to bind against the API server's copy. Reading that copy
with a GET per bind put one API round trip between kube-scheduler's choice and the
reservation, and cost the API server a read per pod. An informer of the pending pods
(spec.nodeName empty, spec.schedulerName ours) keeps the same copy in memory: a bind
checks it and sends its resourceVersion as a precondition of the Binding, so the API
server refuses the bind (409) if the pod changed since the copy the checks read. A pod the
informer has not seen yet, or not with the UID asked for, is read with a GET as before.

The same copy tells the learned workload what is asked for and has not found room
(scoring.workload_shapes): each whole-GPU pod's request, read once per event. A pod
whose request does not read is left out here (the filter verb tells its owner why), and
so is one being deleted or held by scheduling gates.
"""
from __future__ import annotations

import threading
from typing import Any

from scheduler.core import PodRequest, RequestError, parse_pod
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
        self._asks: dict[str, PodRequest] = {}  # the whole-GPU ones' requests

    def set_pods(self, pods: list[dict[str, Any]]) -> None:
        fresh = {pod_key(p): p for p in pods if not (p.get("spec") or {}).get("nodeName")}
        asks = {key: req for key, p in fresh.items() if (req := _whole_gpu_request(p)) is not None}
        with self._lock:
            self._pods, self._asks = fresh, asks

    def on_pod(self, typ: str, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        gone = typ == "DELETED" or bool((pod.get("spec") or {}).get("nodeName"))
        req = None if gone else _whole_gpu_request(pod)
        with self._lock:
            if gone:
                self._pods.pop(key, None)
            else:
                self._pods[key] = pod
            if req is None:
                self._asks.pop(key, None)
            else:
                self._asks[key] = req

    def requests(self) -> list[tuple[str, PodRequest]]:
        """(key, request) of each pending pod asking whole GPUs."""
        with self._lock:
            return list(self._asks.items())

    def get(self, key: str) -> dict[str, Any] | None:
        """The pod as last seen pending, or None; the caller must not change it."""
        return self._pods.get(key)

    def __len__(self) -> int:
        return len(self._pods)


def _whole_gpu_request(pod: dict[str, Any]) -> PodRequest | None:
    """What a pending pod asks, where it is whole GPUs kube-scheduler will try to place: not
    a pod being deleted, nor one held by scheduling gates (a queue such as Kueue has not
    admitted it; kube-scheduler does not try it yet)."""
    meta, spec = pod.get("metadata"), pod.get("spec")
    if isinstance(meta, dict) and meta.get("deletionTimestamp"):
        return None
    if isinstance(spec, dict) and spec.get("schedulingGates"):
        return None
    try:
        req = parse_pod(pod)
    except RequestError:
        return None
    return req if req.whole_gpus > 0 else None
