"""Whole GPUs by `nvidia.com/gpu` and ResourceClaims of gpu.gpusched.io never share a node.

Two allocators hand out the same GPUs and neither sees the other: the device plugin picks,
in the kubelet, which GPUs an `nvidia.com/gpu` container gets (gpusched's `gpu-ids` only
say which it expects), and kube-scheduler's DRA allocator picks a claim's GPU without
seeing device-plugin pods. On a node with both, a claim share can land on the GPU the
device plugin gave a whole-GPU pod, or the device plugin can give a whole-GPU pod the GPU a
claim holds, and no record would show it. So the extender keeps them to different nodes:

- an `nvidia.com/gpu` pod does not pass a node where a claim of gpu.gpusched.io holds a
  GPU (filter), nor is it bound to one (bind, against claims counted since);
- a claim pod is refused on a node with an `nvidia.com/gpu` pod: at filter by the claim
  rule (claim_fit) wherever the allocator could pick the GPU gpusched's records give that
  pod, and always at bind (the allocated claim then fails filter there, and once
  kube-scheduler's Unreserve has cleared reservedFor the resourceclaim controller
  deallocates it).

Whole GPUs beside claims go by claim too (`gpusched claim-template --gpus N`). Pods of
other schedulers never reach the extender (docs/ownership.md).

Which nodes a claim marks, even one gpusched cannot count: scheduler/core/claims.py,
`allocated_nodes` (a claim that names no node marks none, and the extender says so).

The refusal is unresolvable (FailedAndUnresolvableNodes): kube-scheduler's preemption
(v1.36.3, preemption.go) tries only nodes marked Unschedulable and simulates them with its
own filter plugins, which passed this node already, never the extender; so it would find no
victim there ("expected at least one victim pod", an error status). Even with a preempt verb,
evicting the claim pods frees the node only once no pod reserves the claim, which a shared
claim's other pods may never do.

Pure: arrays and names in, masks and reasons out.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

WHOLE_BESIDE_CLAIMS = (
    "gpusched: ResourceClaims of gpu.gpusched.io hold GPUs here; the device plugin that hands "
    "out nvidia.com/gpu does not see claims and could give this pod one of theirs. Ask whole "
    "GPUs by claim on such nodes (gpusched claim-template --gpus N)")


def claimed_rows(index: Mapping[str, int], rows: int, nodes: Iterable[str]) -> np.ndarray:
    """One bool per snapshot row: whether a claim holds a GPU of that node."""
    claimed = np.zeros(rows, bool)
    at = [index[n] for n in nodes if n in index]
    claimed[at] = True
    return claimed


def refuse_claimed(ok: np.ndarray, reasons: list[str], rows: np.ndarray,
                   claimed: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The filter's answer for an `nvidia.com/gpu` pod with the candidates (`rows`, -1 for a
    node not in the snapshot) whose node holds claims refused too; `reasons` are the failed
    candidates' in candidate order, and stay so. The third array marks every claimed
    candidate, refused here or already failed (its reason kept): unresolvable by preemption
    (above), whatever else failed there."""
    hit = np.zeros(len(rows), bool)
    known = rows >= 0
    hit[known] = claimed[rows[known]]
    if not (ok & hit).any():
        return ok, reasons, hit
    before = iter(reasons)
    out = ok & ~hit
    return out, [next(before) if not ok[i] else WHOLE_BESIDE_CLAIMS for i in np.flatnonzero(~out).tolist()], hit


def claim_beside_plugin(node: str, pods: Sequence[str]) -> str:
    """The bind refusal of a claim pod on a node where `pods` hold nvidia.com/gpu."""
    named = ", ".join(sorted(pods)[:3]) + (f" and {len(pods) - 3} more" if len(pods) > 3 else "")
    return (f"{node} runs pods holding nvidia.com/gpu ({named}) whose GPUs the device plugin picked "
            "without seeing claims; a claim there could share one of them; kube-scheduler retries the pod")
