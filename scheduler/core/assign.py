"""Which GPUs of the chosen node a pod gets.

Shares go best-fit: the GPU with the least free memory that still holds the pod, so
big holes stay big (the packing score and the fragmentation score assume this same
choice, so what was scored is what is bound). Whole GPUs take the lowest free indices.
Ties break by index, so the choice is deterministic.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from scheduler.core.feasibility import eligible_whole
from scheduler.core.request import PodRequest
from scheduler.core.snapshot import ClusterSnapshot
from scheduler.quantity import format_bytes


class Assignment(NamedTuple):
    gpu_ids: tuple[int, ...] | None  # None: nothing fits on this node now
    memory_per_gpu: int  # bytes counted on each GPU (whole GPUs: the GPU's total)
    reason: str


def best_fit_gpu(free: np.ndarray, need: int) -> np.ndarray:
    """[N] index of the best-fit GPU per row for a share of `need` bytes, -1 where none fits."""
    none = np.iinfo(np.int64).max  # above any leftover: a GPU holds far less than 2**63 bytes
    leftover = np.where(free >= need, free - need, none)
    best = leftover.argmin(axis=1)
    # a row fits where its best leftover is one: a gather of one value per row, where
    # any(axis=1) over the [N, G] flags costs a pass over every GPU
    return np.where(leftover[np.arange(len(best)), best] != none, best, -1)


def assign_gpus(s: ClusterSnapshot, node: str, req: PodRequest) -> Assignment:
    row = s.index.get(node)
    if row is None:
        return Assignment(None, 0, f"node {node} is not in gpusched's snapshot")
    if not req.gpu_pod:
        return Assignment((), 0, "no GPU requested")
    rows = np.array([row])
    if req.whole_gpus:
        free_ids = np.flatnonzero(eligible_whole(s, rows, req)[0])
        if len(free_ids) < req.whole_gpus:
            return Assignment(None, 0, f"{node} has {len(free_ids)} free whole GPUs, pod needs {req.whole_gpus}")
        ids = tuple(int(i) for i in free_ids[: req.whole_gpus])
        mem = int(s.gpu_mem_total[row, ids[0]])
        return Assignment(ids, mem, f"{req.whole_gpus} whole GPU(s) {list(ids)} on {node}")
    g = int(best_fit_gpu(s.free[rows], req.gpu_memory)[0])
    if g < 0:
        return Assignment(None, 0, f"no GPU on {node} has {format_bytes(req.gpu_memory)} free "
                                   f"(largest {format_bytes(int(s.max_free[row]))})")
    left = int(s.free[row, g]) - req.gpu_memory
    return Assignment((g,), req.gpu_memory, f"share of {format_bytes(req.gpu_memory)} on GPU {g} of {node}, "
                                           f"best fit ({format_bytes(left)} left on it)")
