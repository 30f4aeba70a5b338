"""Node objects for kwok's fake GPU nodes, and creating many of them quickly."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from kubernetes import client
from kubernetes.client.rest import ApiException

from benchmarks.testbed.dra import gpu_uuid
from benchmarks.testbed.profiles import NodeSpec, gpu_memory_bytes
from scheduler import contract
from scheduler.nodeinfo import GPU, CachedModel, NodeReport, annotations_for

log = logging.getLogger(__name__)

KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def node_body(spec: NodeSpec, now: datetime | None = None) -> dict[str, Any]:
    mem = gpu_memory_bytes(spec)
    report = NodeReport(
        gpus=tuple(GPU(i, gpu_uuid(spec.name, i), mem, 0, product=spec.product) for i in range(spec.gpus)),
        models=tuple(CachedModel(m, b, t) for m, (b, t) in spec.cached_models.items()),
        reported_at=now or datetime.now(timezone.utc),
    )
    resources = {
        "cpu": f"{spec.cpu_milli}m",
        "memory": f"{spec.memory_mib}Mi",
        "pods": "110",
        contract.GPU_RESOURCE: str(spec.gpus),
    }
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        contract.GPU_PRODUCT_LABEL: spec.product,
        contract.GPU_MEMORY_LABEL: str(spec.gpu_memory_mib),
        contract.GPU_COUNT_LABEL: str(spec.gpus),
        "nvidia.com/gpu.present": "true",
        **spec.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": labels,
            # The test bed plays the node agent and reports once, at creation: extenders
            # on the test bed run with a staleAfterSeconds longer than the session.
            "annotations": {KWOK_ANNOTATION: "fake", **annotations_for(report)},
        },
        "spec": {},
        "status": {"capacity": resources, "allocatable": resources},
    }


def create_nodes(api: client.CoreV1Api, specs: Iterable[NodeSpec], workers: int = 16) -> int:
    """Create the nodes (an existing one is replaced); returns how many were created."""
    def one(spec: NodeSpec) -> None:
        body = node_body(spec)
        try:
            api.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            api.delete_node(spec.name)
            api.create_node(body)

    specs = list(specs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, specs))
    return len(specs)
