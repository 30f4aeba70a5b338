"""Tiny clusters and pods for the placement bench's tests, built without CSV files."""
from __future__ import annotations

import numpy as np

from benchmarks.placement.state import State
from benchmarks.placement.trace import Nodes, Pod, Pods


def nodes(*rows: tuple[int, int, int, str]) -> Nodes:
    """rows: (cpu_milli, memory_mib, gpus, model); names n0, n1, ..."""
    return Nodes("tiny-nodes.csv", tuple(f"n{i}" for i in range(len(rows))),
                 np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
                 np.array([r[2] for r in rows], np.int64), tuple(r[3] for r in rows))


_count = iter(range(10**9))


def pod(num_gpu: int = 0, gpu_milli: int = 0, cpu: int = 1000, mem: int = 0, spec: str = "", key: str = "") -> Pod:
    i = next(_count)
    return Pod(key or f"p{i}", i + 2, cpu, mem, num_gpu, gpu_milli, frozenset(s for s in spec.split("|") if s))


def pods(*items: Pod) -> Pods:
    return Pods("tiny-pods.csv", tuple(items), "creation_time order", 0)


def place(state: State, p: Pod, node: int, gpus: tuple[int, ...] = ()) -> None:
    state.apply(p, node, gpus)
