"""What a pod asks of the GPU placement core, read from the pod as Kubernetes JSON.

Annotations come from users and their charts, so every value is checked here, once,
and a bad one raises `RequestError` with a message a user can act on; the rest of the
core can then trust a `PodRequest`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from scheduler import contract
from scheduler.core.resources import Requests, pod_requests
from scheduler.quantity import QuantityError, parse_bytes

# A node has at most 64 GPUs (the node report's own bound); more is a typo.
MAX_WHOLE_GPUS = 64
# No single GPU has more memory than this; a bigger per-GPU demand can never fit.
MAX_GPU_MEMORY = 2**40  # 1 TiB
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$")
_COUNT_RE = re.compile(r"^\s*[+-]?\d+\s*$")


class RequestError(ValueError):
    """The pod cannot be placed as written; the message says which field and why."""


@dataclass(frozen=True)
class PodRequest:
    whole_gpus: int = 0  # nvidia.com/gpu over the pod's containers
    gpu_memory: int = 0  # bytes needed on each GPU; 0 = not given
    model: str | None = None
    model_bytes: int | None = None
    products: frozenset[str] = frozenset()  # acceptable nvidia.com/gpu.product values (globs allowed); empty = any
    cpu_milli: int = 0  # the pod's CPU request as kube-scheduler counts it (core/resources.py)
    ram: int = 0  # its memory request (RAM, bytes), the same way

    @property
    def shared(self) -> bool:
        """A share of one GPU, sized by memory, with no device-plugin GPU."""
        return self.whole_gpus == 0 and self.gpu_memory > 0

    @property
    def gpu_pod(self) -> bool:
        return self.whole_gpus > 0 or self.gpu_memory > 0


def _gpu_count(value: Any, where: str) -> int:
    what = f"{where} {contract.GPU_RESOURCE}"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RequestError(f"{what}: expected a whole number of GPUs, got {value!r:.40}")
    if isinstance(value, str) and not _COUNT_RE.match(value):
        raise RequestError(f"{what}: {value[:40]!r} is not a whole number of GPUs")
    try:
        n = int(value)
    except ValueError:  # more digits than int() converts (4,300): no node has that many GPUs
        raise RequestError(f"{what}: {str(value)[:40]!r}... is not a usable number of GPUs") from None
    if n < 0:
        raise RequestError(f"{what}: {value!r} must not be negative")
    if n > MAX_WHOLE_GPUS:
        raise RequestError(f"{what}: {n} is more than the {MAX_WHOLE_GPUS} GPUs any node has")
    return n


def _container_gpus(container: Any, where: str) -> int:
    if not isinstance(container, dict):
        raise RequestError(f"{where}: expected an object")
    resources = container.get("resources") or {}
    if not isinstance(resources, dict):
        raise RequestError(f"{where}.resources: expected an object")
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if not isinstance(limits, dict) or not isinstance(requests, dict):
        raise RequestError(f"{where}.resources: limits and requests must be objects")
    lim = limits.get(contract.GPU_RESOURCE)
    req = requests.get(contract.GPU_RESOURCE)
    n_lim = None if lim is None else _gpu_count(lim, f"{where} limits")
    n_req = None if req is None else _gpu_count(req, f"{where} requests")
    # Kubernetes rejects extended resources whose request differs from the limit; a pod
    # that got here anyway (e.g. built by hand in a test) is ambiguous, so say so.
    if n_lim is not None and n_req is not None and n_lim != n_req:
        raise RequestError(f"{where}: {contract.GPU_RESOURCE} request {n_req} differs from limit {n_lim}")
    return n_lim if n_lim is not None else (n_req or 0)


def _whole_gpus(spec: Mapping[str, Any]) -> int:
    containers = spec.get("containers") or []
    inits = spec.get("initContainers") or []
    if not isinstance(containers, list) or not isinstance(inits, list):
        raise RequestError("spec.containers and spec.initContainers must be lists")
    running = sum(_container_gpus(c, f"spec.containers[{i}]") for i, c in enumerate(containers))
    # Init containers run one at a time before the others, so the pod needs the larger of
    # their largest demand and the sum of the regular containers (kubelet's own rule).
    init = max((_container_gpus(c, f"spec.initContainers[{i}]") for i, c in enumerate(inits)), default=0)
    total = max(running, init)
    if total > MAX_WHOLE_GPUS:
        raise RequestError(f"{contract.GPU_RESOURCE}: {total} over all containers is more than "
                           f"the {MAX_WHOLE_GPUS} GPUs any node has")
    return total


def _annotation(annotations: Mapping[str, Any], key: str) -> str | None:
    if key not in annotations:
        return None
    value = annotations[key]
    if not isinstance(value, str):
        raise RequestError(f"{key}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise RequestError(f"{key}: is empty; remove the annotation or give a value")
    return value.strip()


# A cluster has a handful of GPU products. Each pattern is matched against every product
# at each filter and, once the pod runs or waits, at each re-learning of the workload's
# shapes (scoring.resolve_pin; pending pods' pins capped by scoring.MAX_PENDING_PINS): a
# pod naming thousands would make every rebuild pay for them.
MAX_PRODUCTS = 64


def _products(annotations: Mapping[str, Any], spec: Mapping[str, Any]) -> frozenset[str]:
    out: set[str] = set()
    text = _annotation(annotations, contract.GPU_PRODUCTS)
    if text is not None:
        names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
        if not names:
            raise RequestError(f"{contract.GPU_PRODUCTS}: {text[:60]!r} names no product")
        if len(names) > MAX_PRODUCTS:
            raise RequestError(f"{contract.GPU_PRODUCTS}: names {len(names)} products, at most {MAX_PRODUCTS}; "
                               "a glob (NVIDIA-A100-*) names many")
        for p in names:
            if len(p) > 128 or any(ch.isspace() for ch in p):
                raise RequestError(f"{contract.GPU_PRODUCTS}: {p[:60]!r} is not a product name")
        out.update(names)
    selector = spec.get("nodeSelector") or {}
    if not isinstance(selector, dict):
        raise RequestError("spec.nodeSelector: expected an object")
    pinned = selector.get(contract.GPU_PRODUCT_LABEL)
    if isinstance(pinned, str) and pinned:
        out.add(pinned)
    return frozenset(out)


def parse_pod(pod: Mapping[str, Any], *, host: Requests | None = None) -> PodRequest:
    """Read a pod (Kubernetes JSON, camelCase) into a checked `PodRequest`; `host`: its
    CPU and memory requests where the caller read them already (pod_requests)."""
    if not isinstance(pod, Mapping):
        raise RequestError(f"pod: expected an object, got {type(pod).__name__}")
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        raise RequestError("pod: metadata and spec must be objects")
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise RequestError("metadata.annotations: expected an object")

    whole = _whole_gpus(spec)
    try:
        mem_text = _annotation(annotations, contract.GPU_MEMORY)
        memory = 0 if mem_text is None else parse_bytes(mem_text, what=contract.GPU_MEMORY, max_bytes=MAX_GPU_MEMORY)
        size_text = _annotation(annotations, contract.MODEL_BYTES)
        model_bytes = None if size_text is None else parse_bytes(size_text, what=contract.MODEL_BYTES)
    except QuantityError as exc:
        raise RequestError(str(exc)) from None

    model = _annotation(annotations, contract.MODEL)
    if model is not None and not _MODEL_RE.match(model):
        raise RequestError(f"{contract.MODEL}: {model[:60]!r} is not a model id "
                           "(letters, digits and ._:/@+- only, at most 256 characters)")
    if host is None:
        host = pod_requests(pod)
    return PodRequest(whole_gpus=whole, gpu_memory=memory, model=model, model_bytes=model_bytes,
                      products=_products(annotations, spec), cpu_milli=host.cpu_milli, ram=host.memory)
