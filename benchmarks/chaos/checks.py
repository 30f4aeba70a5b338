"""What a fault must never do to GPU accounting, checked from the API server's pods.

Pure functions over Kubernetes JSON (pods and nodes as the API returns them), so the
same check runs in the chaos bench, in CI and on hand-made pods in unit tests.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from scheduler import contract
from scheduler.core.objects import parse_gpu_ids
from scheduler.nodeinfo import MiB, report_from_annotations
from scheduler.quantity import QuantityError, parse_bytes


@dataclass
class GpuCheck:
    bound: int = 0
    without_ids: int = 0  # bound by kube-scheduler's own binder (extender down): no gpu-ids
    # (node, gpu) -> why: a whole GPU given twice, or shares over the GPU's memory
    double_booked: dict[str, str] = field(default_factory=dict)
    # node -> why: more whole GPUs or more memory than the node has (pods without ids included)
    node_overcommit: dict[str, str] = field(default_factory=dict)

    @property
    def violations(self) -> int:
        return len(self.double_booked) + len(self.node_overcommit)


def _whole_gpus(pod: dict[str, Any]) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        v = (res.get("limits") or {}).get(contract.GPU_RESOURCE) or (res.get("requests") or {}).get(contract.GPU_RESOURCE)
        total += int(v) if v is not None else 0
    return total


def gpu_capacity(nodes: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """Node name -> usable bytes per GPU, as the node's report says."""
    out = {}
    for n in nodes:
        meta = n.get("metadata") or {}
        report = report_from_annotations(meta.get("annotations"))
        out[meta.get("name", "")] = [g.memory_total for g in sorted(report.gpus, key=lambda g: g.index)]
    return out


def check_gpus(pods: Iterable[dict[str, Any]], capacity: dict[str, list[int]]) -> GpuCheck:
    res = GpuCheck()
    whole_owner: dict[tuple[str, int], str] = {}
    shares: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    node_whole: dict[str, int] = defaultdict(int)
    node_bytes: dict[str, int] = defaultdict(int)
    for p in pods:
        meta, spec, status = p.get("metadata") or {}, p.get("spec") or {}, p.get("status") or {}
        node = spec.get("nodeName")
        if not node or meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        res.bound += 1
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        ann = meta.get("annotations") or {}
        whole = _whole_gpus(p)
        try:
            mem = parse_bytes(ann[contract.GPU_MEMORY]) if contract.GPU_MEMORY in ann else 0
        except QuantityError:
            mem = 0
        if not whole and not mem:
            continue
        ids = parse_gpu_ids(ann.get(contract.GPU_IDS))
        caps = capacity.get(node) or []
        per_gpu = max(caps) if caps else 0
        node_whole[node] += whole
        node_bytes[node] += whole * per_gpu if whole else mem
        if ids is None:
            res.without_ids += 1
            continue
        for i in ids:
            key = (node, i)
            if i >= len(caps):
                res.double_booked[f"{node}/gpu{i}"] = f"{name} holds GPU {i}, which {node} does not have"
            elif whole:
                if key in whole_owner:
                    res.double_booked[f"{node}/gpu{i}"] = f"whole GPU given to {whole_owner[key]} and {name}"
                whole_owner[key] = name
            else:
                shares[key].append((name, mem))
    for key, held in shares.items():
        node, i = key
        label = f"{node}/gpu{i}"
        if key in whole_owner:
            res.double_booked[label] = f"whole GPU of {whole_owner[key]} also holds shares of {held[0][0]}"
            continue
        used = sum(m for _, m in held)
        cap = capacity[node][i]
        if used > cap:
            res.double_booked[label] = (f"{len(held)} shares hold {used // MiB} MiB of {cap // MiB} MiB "
                                        f"({', '.join(n for n, _ in held[:4])})")
    for node, n in node_whole.items():
        caps = capacity.get(node) or []
        if n > len(caps):
            res.node_overcommit[node] = f"{n} whole GPUs bound, node has {len(caps)}"
        elif node_bytes[node] > sum(caps):
            res.node_overcommit[node] = f"{node_bytes[node] // MiB} MiB bound, node has {sum(caps) // MiB} MiB"
    for node, b in node_bytes.items():
        if node not in node_whole and b > sum(capacity.get(node) or []):
            res.node_overcommit[node] = f"{b // MiB} MiB bound, node has {sum(capacity.get(node) or []) // MiB} MiB"
    return res


def extender_view_overcommit(describe: dict[str, Any]) -> list[str]:
    """GPUs the extender itself (its /debug/nodes/NAME answer) counts as over-committed."""
    return [f"{describe.get('node')}/gpu{g['index']}: {g['committedMiB']} of {g['totalMiB']} MiB"
            for g in describe.get("gpus") or [] if g["committedMiB"] > g["totalMiB"]]
