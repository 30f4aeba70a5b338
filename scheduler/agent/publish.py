"""When the agent writes its Node (a pure decision), and the Kubernetes adapter that writes it.

Budget: a write when something that matters changed, at most once per
`min_interval_s`, and a heartbeat every `heartbeat_s` that refreshes
`gpusched.io/reported-at` (so the extender can tell a live report from a stale one).
With the defaults (30 s, 120 s) 1,000 quiet nodes make 1000/120 = 8.3 writes a
second; nodes that change all the time at most 1000/30 = 33.

What "matters": the set of GPUs (index, UUID, product, memory total), a GPU's
health, a GPU's memory used moving by more than `mem_threshold_bytes` since the
last write, and the set of cached models (id, bytes, tier). Utilisation alone
never causes a write: it is in Prometheus, and refreshed on the heartbeat.
"""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import urllib3

from scheduler import contract, nodeinfo
from scheduler.kube.client import unreachable_reason
from scheduler.nodeinfo import NodeReport
from scheduler.quantity import format_bytes

log = logging.getLogger(__name__)

DEFAULT_MIN_INTERVAL_S = 30.0
DEFAULT_HEARTBEAT_S = 120.0
DEFAULT_MEM_THRESHOLD = 2**30  # 1 GiB
FIELD_MANAGER = "gpusched-agent"


def report_changes(last: NodeReport, current: NodeReport, mem_threshold_bytes: int) -> list[str]:
    """What changed between two reports, as short phrases; empty when nothing that matters did."""
    changes: list[str] = []
    old = {g.index: g for g in last.gpus}
    new = {g.index: g for g in current.gpus}
    if set(old) != set(new):
        changes.append(f"GPU count {len(old)} -> {len(new)}")
    for i in sorted(set(old) & set(new)):
        a, b = old[i], new[i]
        if (a.uuid, a.product, a.memory_total) != (b.uuid, b.product, b.memory_total):
            changes.append(f"GPU {i} is now {b.uuid or '?'} ({b.product or '?'}, {format_bytes(b.memory_total)})")
        if a.healthy != b.healthy:
            changes.append(f"GPU {i} {'healthy' if b.healthy else 'unhealthy'}")
        delta = b.memory_used - a.memory_used
        if abs(delta) > mem_threshold_bytes:
            changes.append(f"GPU {i} memory used {'+' if delta > 0 else '-'}{format_bytes(abs(delta))}")
    om = {m.model: m for m in last.models}
    nm = {m.model: m for m in current.models}
    added, removed = sorted(set(nm) - set(om)), sorted(set(om) - set(nm))
    if added:
        changes.append("models +" + ",".join(added))
    if removed:
        changes.append("models -" + ",".join(removed))
    for m in sorted(set(om) & set(nm)):
        if om[m].tier != nm[m].tier:
            changes.append(f"{m} tier {om[m].tier} -> {nm[m].tier}")
        elif om[m].bytes != nm[m].bytes:
            changes.append(f"{m} bytes {om[m].bytes} -> {nm[m].bytes}")
    return changes


def should_publish(last_published: NodeReport | None, current: NodeReport, last_time: float, now: float,
                   min_interval_s: float = DEFAULT_MIN_INTERVAL_S, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                   mem_threshold_bytes: int = DEFAULT_MEM_THRESHOLD) -> tuple[bool, str]:
    """Whether to write `current` now, and why (or why not). `last_time` and `now` are
    seconds on one monotonic clock; `last_time` is when `last_published` was written."""
    if last_published is None:
        return True, "first report"
    elapsed = now - last_time
    if elapsed < 0:
        return True, "clock went back; writing to resynchronise"
    if elapsed >= heartbeat_s:
        changes = report_changes(last_published, current, mem_threshold_bytes)
        return True, "heartbeat" + (": " + "; ".join(changes) if changes else "")
    changes = report_changes(last_published, current, mem_threshold_bytes)
    if not changes:
        return False, "no change"
    if elapsed < min_interval_s:
        return False, f"rate-limited for {min_interval_s - elapsed:.0f}s: " + "; ".join(changes)
    return True, "; ".join(changes)


_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    """A valid label value as GPU feature discovery writes it ('NVIDIA H100 80GB HBM3' ->
    'NVIDIA-H100-80GB-HBM3')."""
    v = re.sub(r"-{2,}", "-", _LABEL_BAD.sub("-", "-".join(text.split())))
    return v[:63].strip("-._")


def gpu_labels(product: str | None, memory_total_mib: int | None, count: int) -> dict[str, str]:
    """nvidia.com/gpu.{product,memory,count}, as NVIDIA's GPU feature discovery names them.
    Empty when there is nothing to say (no GPUs): the agent never deletes these labels."""
    labels: dict[str, str] = {}
    if count <= 0:
        return labels
    labels[contract.GPU_COUNT_LABEL] = str(count)
    if product and label_value(product):
        labels[contract.GPU_PRODUCT_LABEL] = label_value(product)
    if memory_total_mib:
        labels[contract.GPU_MEMORY_LABEL] = str(int(memory_total_mib))
    return labels


class NodePublisher:
    """Writes this agent's own Node: a JSON merge patch of the gpusched.io annotations and
    the nvidia.com/gpu.* labels (nothing else), and Events about the Node.

    Takes a kubernetes `CoreV1Api`. API errors never raise: they are logged and the
    method returns False, so the daemon retries on a later tick."""

    def __init__(self, core_v1: Any, node_name: str, *, component: str = FIELD_MANAGER,
                 event_namespace: str = "default", request_timeout: tuple[float, float] = (5.0, 15.0),
                 event_repeat_s: float = 3600.0, max_events_per_minute: int = 12,
                 clock: Callable[[], float] = time.monotonic):
        if not node_name:
            raise ValueError("node name is required to publish")
        self.api = core_v1
        self.node_name = node_name
        self.component = component
        self.event_namespace = event_namespace
        self.timeout = request_timeout
        self.event_repeat_s = event_repeat_s
        self.max_events_per_minute = max_events_per_minute
        self.clock = clock
        self._sent: dict[tuple[str, str], float] = {}  # (reason, message) -> when
        self._recent: list[float] = []
        self.last_error: str | None = None

    def patch_body(self, report: NodeReport, labels: Mapping[str, str]) -> dict[str, Any]:
        meta: dict[str, Any] = {"annotations": nodeinfo.annotations_for(report)}
        if labels:
            meta["labels"] = dict(labels)
        return {"metadata": meta}

    def publish(self, report: NodeReport, labels: Mapping[str, str] = {}) -> bool:  # noqa: B006 - read only
        body = self.patch_body(report, labels)
        try:
            self.api.patch_node(self.node_name, body, field_manager=FIELD_MANAGER,
                                _content_type="application/merge-patch+json", _request_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - ApiException, urllib3 errors, timeouts
            self.last_error = _api_error(exc)
            log.warning("patching Node %s failed (will retry): %s", self.node_name, self.last_error)
            return False
        self.last_error = None
        return True

    def node_annotations(self) -> dict[str, str] | None:
        """This Node's annotations, served from the API server's watch cache
        (resourceVersion=0); None when the Node cannot be read."""
        meta = self.node_metadata()
        return None if meta is None else meta[1]

    def node_metadata(self) -> tuple[dict[str, str], dict[str, str]] | None:
        """This Node's (labels, annotations), from the watch cache; None when it cannot be read."""
        try:
            nodes = self.api.list_node(field_selector=f"metadata.name={self.node_name}", resource_version="0",
                                       _request_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            self.last_error = _api_error(exc)
            log.warning("reading Node %s failed: %s", self.node_name, self.last_error)
            return None
        items = getattr(nodes, "items", None) or []
        if not items:
            self.last_error = f"Node {self.node_name} not found"
            log.warning("%s", self.last_error)
            return None
        meta = items[0].metadata
        return dict(getattr(meta, "labels", None) or {}), dict(getattr(meta, "annotations", None) or {})

    def event(self, reason: str, message: str, type_: str = "Warning") -> bool:
        """Record an Event on this Node (kubectl describe node shows it). The same reason and
        message are sent at most once per `event_repeat_s`, and at most
        `max_events_per_minute` in all; returns whether it was sent."""
        message = message if len(message) <= 1024 else message[:1021] + "..."
        now = self.clock()
        key = (reason, message)
        last = self._sent.get(key)
        if last is not None and now - last < self.event_repeat_s:
            return False
        self._recent = [t for t in self._recent if now - t < 60.0]
        if len(self._recent) >= self.max_events_per_minute:
            log.info("event dropped (more than %d a minute): %s: %s", self.max_events_per_minute, reason, message)
            return False
        stamp = datetime.now(timezone.utc)
        body = {
            "metadata": {"name": f"{self.node_name}.{time.time_ns():x}", "namespace": self.event_namespace},
            # kubelet's and kubectl describe node's reference: the Node's UID is its name
            "involvedObject": {"kind": "Node", "name": self.node_name, "uid": self.node_name, "apiVersion": "v1"},
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component, "host": self.node_name},
            "reportingComponent": f"{contract.DOMAIN}/agent",
            "reportingInstance": self.node_name,
            "firstTimestamp": nodeinfo.encode_time(stamp),
            "lastTimestamp": nodeinfo.encode_time(stamp),
            "count": 1,
        }
        try:
            self.api.create_namespaced_event(self.event_namespace, body, _request_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            log.warning("recording Event %s on Node %s failed: %s", reason, self.node_name, _api_error(exc))
            return False
        self._sent[key] = now
        self._recent.append(now)
        if len(self._sent) > 1000:  # forget the oldest
            for k, _ in sorted(self._sent.items(), key=lambda kv: kv[1])[:500]:
                del self._sent[k]
        return True


def _api_error(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError)):
        return f"cannot reach the API server: {unreachable_reason(exc)}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
