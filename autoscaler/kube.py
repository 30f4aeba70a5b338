"""The autoscaler's Kubernetes adapter: every API call it makes, on plain JSON.

Uses scheduler.kube.client's transport (raw/request: the official client's auth and
TLS, no model objects). The daemon never builds a path or a patch itself.

Writes, and why each is safe to repeat:
- ``scale``: PATCH deployments/{name}/scale with the Deployment's resourceVersion as a
  precondition; on 409 Conflict it reads again and retries with backoff, and gives up
  (KubeError) when someone keeps changing the Deployment.
- ``set_serving``: strategic-merge PATCH of pods/{name}/status: only the condition
  ``gpusched.io/serving`` changes (conditions merge by type); the kubelet (kwok in
  the test bed) recomputes Ready from it.
- ``patch_status``: merge PATCH of inferenceautoscalers/{name}/status.
- ``EventRecorder``: core/v1 Events on the InferenceAutoscaler; a repeat of the same
  (object, type, reason, message) within ``EVENT_SERIES_S`` increments the first one's
  count instead of creating another (as client-go's EventCorrelator does).
- ``add_prefetch``: merge PATCH of one Node's gpusched.io/prefetch annotation (with
  the Node's resourceVersion; other entries are kept).
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping
from urllib.parse import quote

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from scheduler import contract
from scheduler.kube.client import raw
from scheduler.kube.watch import list_all

from scheduler import names

log = logging.getLogger(__name__)

GROUP = "gpusched.io"
VERSION = "v1alpha1"
PLURAL = "inferenceautoscalers"
KIND = "InferenceAutoscaler"
API_VERSION = f"{GROUP}/{VERSION}"
COMPONENT = "gpusched-autoscaler"

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

EVENT_SERIES_S = 600.0  # repeats within this fold into one Event's count
EVENT_PATCH_EVERY_S = 30.0  # a repeating Event's count is written at most this often


class KubeError(Exception):
    """An API call that failed; ``reason`` is a CamelCase word for a condition/Event."""

    def __init__(self, reason: str, message: str, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status


def _api_error(exc: ApiException) -> str:
    text = str(exc.reason or "")
    try:
        body = json.loads(exc.body) if exc.body else None
        if isinstance(body, dict) and body.get("message"):
            text = body["message"]
    except (TypeError, ValueError):
        pass
    return f"HTTP {exc.status}: {text}"[:500]


def now_iso(t: float | None = None) -> str:
    d = datetime.fromtimestamp(time.time() if t is None else t, timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- paths

def _segment(value: str, what: str, *, label: bool = False) -> str:
    """One path segment from a name: checked as the API server would name the object,
    then URL-quoted (nothing stays unquoted, '/' included), so no name can step into
    another path. Raises KubeError InvalidName."""
    why = names.label_error(value) if label else names.subdomain_error(value)
    if why is not None:
        raise KubeError("InvalidName", f"{what}: {why}")
    return quote(value, safe="")


def ias_path(namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    p = f"/apis/{GROUP}/{VERSION}"
    if namespace:
        p += f"/namespaces/{_segment(namespace, 'namespace', label=True)}"
    p += f"/{PLURAL}"
    if name:
        p += f"/{_segment(name, 'InferenceAutoscaler name')}"
        if sub:
            p += f"/{quote(sub, safe='')}"
    return p


def deployment_path(namespace: str, name: str, sub: str | None = None) -> str:
    return (f"/apis/apps/v1/namespaces/{_segment(namespace, 'namespace', label=True)}/deployments/"
            f"{_segment(name, 'Deployment name')}" + (f"/{quote(sub, safe='')}" if sub else ""))


def pods_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{_segment(namespace, 'namespace', label=True)}/pods"


def pod_path(namespace: str, name: str, sub: str | None = None) -> str:
    return f"{pods_path(namespace)}/{_segment(name, 'pod name')}" + (f"/{quote(sub, safe='')}" if sub else "")


def node_path(name: str) -> str:
    return f"/api/v1/nodes/{_segment(name, 'node name')}"


def events_path(namespace: str, name: str | None = None) -> str:
    p = f"/api/v1/namespaces/{_segment(namespace, 'namespace', label=True)}/events"
    return p + (f"/{_segment(name, 'Event name')}" if name else "")


def replicasets_path(namespace: str) -> str:
    return f"/apis/apps/v1/namespaces/{_segment(namespace, 'namespace', label=True)}/replicasets"


def check_identity(obj: Any, kind: str, namespace: str | None, name: str) -> dict:
    """The object the API server answered is the one asked for (namespace and name):
    a proxy, a rewritten path or a server bug must not make the autoscaler act on, or
    report, another object. Raises KubeError UnexpectedObject."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    got_ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    got_name = meta.get("name") if isinstance(meta, Mapping) else None
    if got_name != name or (namespace is not None and got_ns != namespace):
        raise KubeError("UnexpectedObject", f"asked for {kind} {namespace + '/' if namespace else ''}{name}, the API "
                        f"server answered {str(got_ns)[:63]}/{str(got_name)[:253]}: not acting on it")
    return dict(obj)


# ---------------------------------------------------------------- selectors

def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector ({matchLabels, matchExpressions}) as the labelSelector query
    string. An empty selector would select every pod of the namespace: refused."""
    if not isinstance(selector, Mapping):
        raise ValueError("the Deployment has no spec.selector")
    parts: list[str] = []
    for k, v in sorted((selector.get("matchLabels") or {}).items()):
        parts.append(f"{k}={v}")
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e.get("key"), e.get("operator"), list(e.get("values") or [])
        if not key:
            raise ValueError(f"selector expression without a key: {e}")
        if op == "In":
            parts.append(f"{key} in ({','.join(vals)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(vals)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"unknown selector operator {op!r}")
    if not parts:
        raise ValueError("the Deployment's selector is empty (it would select every pod in the namespace)")
    return ",".join(parts)


# ---------------------------------------------------------------- reads

def get_deployment(api: ApiClient, namespace: str, name: str) -> dict | None:
    """The Deployment, or None when there is none (404)."""
    try:
        status, body = raw(api, "GET", deployment_path(namespace, name))
    except ApiException as exc:
        raise KubeError("FailedGetTarget", f"reading Deployment {namespace}/{name}: {_api_error(exc)}",
                        exc.status) from None
    if status == 404:
        return None
    return check_identity(body, "Deployment", namespace, name)


def list_pods(api: ApiClient, namespace: str, selector: str) -> list[dict]:
    try:
        items, _ = list_all(api, pods_path(namespace), {"labelSelector": selector})
    except ApiException as exc:
        raise KubeError("FailedListPods", f"listing pods {selector!r} in {namespace}: {_api_error(exc)}",
                        exc.status) from None
    return items


def list_replicasets(api: ApiClient, namespace: str, selector: str) -> list[dict]:
    try:
        items, _ = list_all(api, replicasets_path(namespace), {"labelSelector": selector})
    except ApiException as exc:
        raise KubeError("FailedListReplicaSets", f"listing ReplicaSets in {namespace}: {_api_error(exc)}",
                        exc.status) from None
    return items


def list_nodes(api: ApiClient) -> list[dict]:
    items, _ = list_all(api, "/api/v1/nodes", {})
    return items


def list_bound_pods(api: ApiClient) -> list[dict]:
    """Every pod bound to a node and not finished (what holds GPUs), cluster-wide."""
    items, _ = list_all(api, "/api/v1/pods",
                        {"fieldSelector": "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"})
    return items


def list_claims(api: ApiClient) -> list[dict]:
    """Every ResourceClaim, cluster-wide: the GPU memory kube-scheduler's allocator gave claim
    shares (snapshot_of counts those of gpu.gpusched.io it can resolve). [] where the API server
    serves no resource.k8s.io/v1 (before Kubernetes 1.34: no claims to count)."""
    try:
        items, _ = list_all(api, "/apis/resource.k8s.io/v1/resourceclaims", {})
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return items


# ---------------------------------------------------------------- scale

def scale(api: ApiClient, namespace: str, name: str, replicas: int, *, deployment: Mapping[str, Any] | None = None,
          attempts: int = 5, backoff_s: float = 0.1, sleep: Callable[[float], None] = time.sleep) -> int | None:
    """Set the Deployment's replicas through its scale subresource, with its
    resourceVersion as precondition; retry on 409 with exponential backoff. Returns the
    replicas it had before (None if it was already at ``replicas``)."""
    dep = deployment
    for attempt in range(attempts):
        if dep is None:
            dep = get_deployment(api, namespace, name)
            if dep is None:
                raise KubeError("TargetNotFound", f"Deployment {namespace}/{name} not found", 404)
        before = int((dep.get("spec") or {}).get("replicas", 1))
        if before == replicas:
            return None
        rv = (dep.get("metadata") or {}).get("resourceVersion")
        body: dict[str, Any] = {"spec": {"replicas": int(replicas)}}
        if rv:
            body["metadata"] = {"resourceVersion": rv}
        try:
            status, answer = raw(api, "PATCH", deployment_path(namespace, name, "scale"), body, content_type=MERGE)
        except ApiException as exc:
            if exc.status == 409 and attempt + 1 < attempts:
                delay = backoff_s * 2 ** attempt * (1 + random.random() / 2)
                log.info("scaling %s/%s: conflict (%s); retrying in %.2fs", namespace, name, _api_error(exc), delay)
                sleep(delay)
                dep = None
                continue
            raise KubeError("FailedRescale" if exc.status != 409 else "Conflict",
                            f"scaling Deployment {namespace}/{name} to {replicas}: {_api_error(exc)}",
                            exc.status) from None
        if status == 404:
            raise KubeError("TargetNotFound", f"Deployment {namespace}/{name} not found", 404)
        check_identity(answer, "Scale", namespace, name)
        return before
    raise KubeError("Conflict", f"scaling Deployment {namespace}/{name}: still conflicting after {attempts} tries")


# ---------------------------------------------------------------- the serving gate

def serving_condition(value: bool, reason: str, message: str, t: float | None = None) -> dict[str, Any]:
    return {"type": contract.SERVING_GATE, "status": "True" if value else "False",
            "reason": reason, "message": message[:1000], "lastTransitionTime": now_iso(t)}


def set_serving(api: ApiClient, namespace: str, pod: str, value: bool, reason: str, message: str) -> None:
    """Set the pod's gpusched.io/serving condition (True: promote, False: demote)."""
    body = {"status": {"conditions": [serving_condition(value, reason, message)]}}
    try:
        status, _ = raw(api, "PATCH", pod_path(namespace, pod, "status"), body, content_type=STRATEGIC)
    except ApiException as exc:
        raise KubeError("FailedPromote" if value else "FailedDemote",
                        f"setting {contract.SERVING_GATE}={value} on pod {namespace}/{pod}: {_api_error(exc)}",
                        exc.status) from None
    if status == 404:
        raise KubeError("FailedPromote" if value else "FailedDemote", f"pod {namespace}/{pod} is gone", 404)


# ---------------------------------------------------------------- status

def patch_status(api: ApiClient, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    try:
        code, _ = raw(api, "PATCH", ias_path(namespace, name, "status"), {"status": dict(status)},
                      content_type=MERGE)
    except ApiException as exc:
        raise KubeError("FailedUpdateStatus", f"updating status of {namespace}/{name}: {_api_error(exc)}",
                        exc.status) from None
    if code == 404:
        raise KubeError("FailedUpdateStatus", f"InferenceAutoscaler {namespace}/{name} is gone", 404)


# ---------------------------------------------------------------- events

@dataclass
class _Series:
    name: str
    namespace: str
    count: int
    first: float
    written: float  # when count was last written
    written_count: int


class EventRecorder:
    """Events on InferenceAutoscalers. Never raises: a failed Event is logged and counted."""

    def __init__(self, api: ApiClient, identity: str, clock: Callable[[], float] = time.time,
                 on_error: Callable[[str], None] | None = None):
        self.api, self.identity, self.clock = api, identity, clock
        self.on_error = on_error
        self._series: dict[tuple, _Series] = {}
        self._lock = threading.Lock()

    def record(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> bool:
        meta = obj.get("metadata") or {}
        ns, name, uid = meta.get("namespace", "default"), meta.get("name", ""), meta.get("uid", "")
        message = message if len(message) <= 1024 else message[:1021] + "..."
        key = (ns, name, uid, type_, reason, message)
        now = self.clock()
        with self._lock:
            s = self._series.get(key)
            if s is not None and now - s.first < EVENT_SERIES_S:
                s.count += 1
                if now - s.written < EVENT_PATCH_EVERY_S:
                    return True
                s.written, s.written_count = now, s.count
                patch = {"count": s.count, "lastTimestamp": now_iso(now)}
                target = (s.namespace, s.name)
            else:
                s = None
        if s is not None:
            try:
                code, _ = raw(self.api, "PATCH", events_path(target[0], target[1]), patch,
                              content_type=MERGE)
                if code != 404:
                    return True
            except ApiException as exc:
                log.debug("patching Event %s: %s", target[1], _api_error(exc))
            except KubeError as exc:  # an unusable name: start a new Event
                log.debug("patching Event %s: %s", target[1], exc)
            with self._lock:
                self._series.pop(key, None)  # gone (TTL) or failing: start a new Event
        # within a subdomain's 253 characters whatever the object's name
        ev_name = f"{name[:200].rstrip('.-') or 'ias'}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": ev_name, "namespace": ns},
            "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": name, "namespace": ns, "uid": uid,
                               "resourceVersion": meta.get("resourceVersion", "")},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": COMPONENT, "host": self.identity},
            "reportingComponent": f"{contract.DOMAIN}/autoscaler",
            "reportingInstance": self.identity,
            "firstTimestamp": now_iso(now), "lastTimestamp": now_iso(now), "count": 1,
        }
        try:
            raw(self.api, "POST", events_path(ns), body)
        except Exception as exc:  # noqa: BLE001 - an Event is never worth a crash
            text = _api_error(exc) if isinstance(exc, ApiException) else str(exc)
            log.warning("recording Event %s on %s/%s failed: %s", reason, ns, name, text)
            if self.on_error:
                self.on_error("event")
            return False
        with self._lock:
            self._series[key] = _Series(ev_name, ns, 1, now, now, 1)
            if len(self._series) > 2000:
                for k, _ in sorted(self._series.items(), key=lambda kv: kv[1].first)[:1000]:
                    del self._series[k]
        return True


# ---------------------------------------------------------------- prefetch

def prefetch_entries(text: str | None) -> list[Any]:
    """The entries of a gpusched.io/prefetch value, kept as written (unreadable: [])."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def entry_model(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping) and isinstance(entry.get("model"), str):
        return entry["model"]
    return None


MAX_PREFETCH_ENTRIES = 32  # the node agent reads at most this many


def add_prefetch(api: ApiClient, node: str, model: str, *, attempts: int = 3) -> bool:
    """Ask the node's agent to prefetch ``model``: append {"model": model} to the Node's
    gpusched.io/prefetch list unless it is there. Returns whether the Node changed."""
    for attempt in range(attempts):
        status, obj = raw(api, "GET", node_path(node))
        if status == 404:
            raise KubeError("NodeNotFound", f"node {node} is gone", 404)
        obj = check_identity(obj, "Node", None, node)
        meta = obj.get("metadata") or {}
        entries = prefetch_entries((meta.get("annotations") or {}).get(contract.PREFETCH))
        if any(entry_model(e) == model for e in entries):
            return False
        if len(entries) >= MAX_PREFETCH_ENTRIES:
            raise KubeError("PrefetchListFull", f"node {node} already lists {len(entries)} prefetches")
        entries.append({"model": model})
        body = {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                             "annotations": {contract.PREFETCH: json.dumps(entries, separators=(",", ":"))}}}
        try:
            raw(api, "PATCH", node_path(node), body, content_type=MERGE)
            return True
        except ApiException as exc:
            if exc.status == 409 and attempt + 1 < attempts:
                time.sleep(0.05 * 2 ** attempt)
                continue
            raise KubeError("FailedPrefetch", f"annotating node {node}: {_api_error(exc)}", exc.status) from None
    return False
