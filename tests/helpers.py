"""Small helpers shared by the integration tests."""
from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_NAMES = itertools.count()


def fresh_name(prefix: str) -> str:
    """A node or object name no earlier test of this run used. A name reused after its
    node was deleted inherits what the deletion has not yet reaped: an ended test's claims
    stay allocated on the node's pool, and its pods bound to the node, until its namespace
    is gone, so the next test's allocator would see that node's devices in use."""
    return f"{prefix}-{os.getpid() % 10000}-{next(_NAMES)}"


def eventually(fn: Callable[[], T], timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> T:
    """Call fn until it returns something truthy; fail with the last value or error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s; last: {last!r}")


def gpu_deployment(name: str, replicas: int, *, gpus: int = 1, annotations: dict[str, str] | None = None,
                   scheduler: str | None = None, labels: dict[str, str] | None = None,
                   readiness_gates: list[str] | None = None) -> dict[str, Any]:
    labels = {"app": name, **(labels or {})}
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    spec: dict[str, Any] = {
        "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0", "resources": resources}],
        "terminationGracePeriodSeconds": 0,
    }
    if scheduler:
        spec["schedulerName"] = scheduler
    if readiness_gates:
        spec["readinessGates"] = [{"conditionType": g} for g in readiness_gates]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels, "annotations": annotations or {}}, "spec": spec},
        },
    }


def condition(pod: Any, type_: str) -> Any:
    return next((c for c in (pod.status.conditions or []) if c.type == type_), None)
