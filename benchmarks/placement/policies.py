"""Baseline placement policies, vectorised over all nodes with numpy.

Each policy sees the pod and its `Candidates` (computed by the simulator on the shared
`State`) and returns (node row, GPU indices) or None when nothing is feasible. Ties
break by node order (the node list's order), then by GPU index, so every policy but
`random` is deterministic; `random` draws from a numpy Generator seeded by --seed.

Unless a policy says otherwise, a share goes to the node's best-fit GPU (the least
free milli-GPU that still holds it, lowest index on ties: the device-level choice of
a packing GPU-share plugin, and the one gpusched's own assign_gpus makes) and whole
GPUs to the lowest-index free ones (all free GPUs are alike here).

- spread: kube-scheduler's default NodeResourcesFit LeastAllocated over cpu, memory
  and GPU (milli) with equal weights: mean over resources of (capacity - requested
  after placement) / capacity, highest wins. kube-scheduler truncates this to an
  integer 0..100 and breaks ties at random; here it is the exact value, ties by node
  order.
- most-allocated: the same with requested / capacity (NodeResourcesFit MostAllocated).
- best-fit: the node with the least GPU capacity left after the placement.
- random: a node drawn uniformly from the feasible ones, and a GPU (or GPUs) drawn
  uniformly from those that fit there.
- dot-product: Tetris's alignment (Grandl et al., SIGCOMM'14): the dot product of the
  pod's demand and the node's free resources, each dimension (cpu, memory, GPU)
  divided by the node's capacity; highest wins. Within the node a share goes to the
  GPU whose free capacity aligns best with it, i.e. the most free one.
- gpu-packing: occupied GPUs first (a share onto a partly used GPU), then free GPUs
  on nodes that already run GPU pods, then idle nodes; node order within a tier.

CPU-only pods are not any GPU scheduler's pods: the cluster's default kube-scheduler
places them, whatever the policy under test (`kube_default`, which the simulator
calls for every policy alike, drawing its ties at random from a stream apart from the
policy's and inflate's, restarted from the seed in every replay).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from benchmarks.placement.state import Candidates, State, nonzero_requests
from benchmarks.placement.trace import MILLI, Pod, Pods

Choice = tuple[int, tuple[int, ...]]


def best_fit_gpu(free_row: np.ndarray, fits_row: np.ndarray) -> int:
    """Least free among the GPUs that fit, lowest index on ties."""
    return int(np.argmin(np.where(fits_row, free_row, np.iinfo(np.int64).max)))


def lowest_gpus(fits_row: np.ndarray, k: int) -> tuple[int, ...]:
    return tuple(int(g) for g in np.flatnonzero(fits_row)[:k])


def default_gpus(state: State, pod: Pod, node: int, c: Candidates) -> tuple[int, ...]:
    kind = pod.kind
    if kind == "cpu":
        return ()
    if kind == "share":
        return (best_fit_gpu(state.gpu_free[node], c.fits[node]),)
    return lowest_gpus(c.fits[node], pod.num_gpu)


def first_max(score: np.ndarray, mask: np.ndarray) -> int | None:
    """Row of the highest score among `mask`, first on ties; None if mask is empty."""
    if not mask.any():
        return None
    return int(np.argmax(np.where(mask, score, -np.inf)))


def drawn_max(score: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> int | None:
    """Row of the highest score among `mask`, drawn at random among ties as kube-scheduler's
    selectHost draws among the nodes of the highest total; None if mask is empty."""
    if not mask.any():
        return None
    top = np.flatnonzero(mask & (score == score[mask].max()))
    return int(top[0]) if len(top) == 1 else int(rng.choice(top))


MAX_NODE_SCORE = 100  # k8s.io/kube-scheduler framework.MaxNodeScore
# default_rng([seed, stream]): the default scheduler's tie draws for CPU-only pods (the simulator's)
# and gpusched's (benchmarks.placement.ours), apart from inflate's pod draws, default_rng(seed)
CPU_TIES_STREAM = 1
GPUSCHED_TIES_STREAM = 2


def kube_default_scores(state: State, pod: Pod) -> np.ndarray:
    """[N] kube-scheduler's default score plugins that tell nodes apart for a bare pod,
    in its integer arithmetic, over cpu and memory (the default resources, weight 1 each):
    NodeResourcesFit LeastAllocated, mean over resources of (cap - req) * 100 // cap
    (0 when over), plus NodeResourcesBalancedAllocation, int((1 - std of the requested
    fractions) * 100). Requests are the non-zero ones kube-scheduler scores with
    (state.nonzero_requests), the pod's included."""
    cpu_nz, mem_nz = nonzero_requests(pod.cpu_milli, pod.memory_mib)
    least = np.zeros(len(state), np.int64)
    fractions = []
    for req, cap in ((state.cpu_scored + cpu_nz, state.cpu_cap), (state.mem_scored + mem_nz, state.mem_cap)):
        safe = np.maximum(cap, 1)
        least += np.where((cap > 0) & (req <= cap), (cap - req) * MAX_NODE_SCORE // safe, 0)
        fractions.append(np.where(cap > 0, np.minimum(req / safe, 1.0), 1.0))
    least //= 2
    # two resources: the standard deviation is half their difference
    balanced = ((1 - np.abs(fractions[0] - fractions[1]) / 2) * MAX_NODE_SCORE).astype(np.int64)
    return least + balanced


def kube_default(state: State, pod: Pod, c: Candidates, rng: np.random.Generator | None = None) -> Choice | None:
    """Where the default kube-scheduler puts a CPU-only pod: the highest kube_default_scores
    among the nodes whose cpu and memory fit, drawn at random among ties as selectHost
    draws (`rng`; None: the first in node order). In integers 0..200 the top score ties
    across many nodes (a typical CPU-only pod of the trace: its 39 G3s and 2 A10s), and
    taking the first of them filled them in the node order the GPU policies' own
    tie-breaks also follow."""
    score = kube_default_scores(state, pod).astype(np.float64)
    node = first_max(score, c.feasible) if rng is None else drawn_max(score, c.feasible, rng)
    return None if node is None else (node, ())


class Policy:
    name = "policy"
    description = ""

    def start(self, state: State, workload: Pods, seed: int) -> None:
        """Called once before the replay, with the whole trace (the target workload)."""

    def choose(self, state: State, pod: Pod, c: Candidates) -> Choice | None:
        raise NotImplementedError

    def placed(self, state: State, pod: Pod, choice: Choice) -> None:
        """Called after the simulator has applied the choice."""


def _after_util(state: State, pod: Pod) -> list[tuple[np.ndarray, np.ndarray]]:
    """(requested after placement, capacity) per resource: cpu, memory, GPU milli."""
    return [
        (state.cpu_cap - state.cpu_free + pod.cpu_milli, state.cpu_cap),
        (state.mem_cap - state.mem_free + pod.memory_mib, state.mem_cap),
        (state.gpu_cap - state.gpu_free.sum(axis=1) + pod.demand_milli, state.gpu_cap),
    ]


class Spread(Policy):
    name = "spread"
    description = "kube-scheduler default: NodeResourcesFit LeastAllocated (cpu, memory, GPU)"

    def choose(self, state, pod, c):
        parts = [np.where(cap > 0, (cap - req) / np.maximum(cap, 1), 0.0) for req, cap in _after_util(state, pod)]
        node = first_max(sum(parts) / len(parts), c.feasible)
        return None if node is None else (node, default_gpus(state, pod, node, c))


class MostAllocated(Policy):
    name = "most-allocated"
    description = "NodeResourcesFit MostAllocated (cpu, memory, GPU)"

    def choose(self, state, pod, c):
        parts = [np.where(cap > 0, req / np.maximum(cap, 1), 0.0) for req, cap in _after_util(state, pod)]
        node = first_max(sum(parts) / len(parts), c.feasible)
        return None if node is None else (node, default_gpus(state, pod, node, c))


class BestFit(Policy):
    name = "best-fit"
    description = "least GPU capacity left on the node after placement"

    def choose(self, state, pod, c):
        left = state.gpu_free.sum(axis=1) - pod.demand_milli
        node = first_max(-left.astype(np.float64), c.feasible)
        return None if node is None else (node, default_gpus(state, pod, node, c))


class Random(Policy):
    name = "random"
    description = "uniform over feasible nodes and fitting GPUs (seeded)"

    def start(self, state, workload, seed):
        self.rng = np.random.default_rng(seed)

    def choose(self, state, pod, c):
        rows = np.flatnonzero(c.feasible)
        if len(rows) == 0:
            return None
        node = int(rows[self.rng.integers(len(rows))])
        if pod.kind == "cpu":
            return node, ()
        gpus = np.flatnonzero(c.fits[node])
        k = 1 if pod.kind == "share" else pod.num_gpu
        pick = self.rng.choice(len(gpus), size=k, replace=False)
        return node, tuple(sorted(int(gpus[i]) for i in pick))


class DotProduct(Policy):
    name = "dot-product"
    description = "Tetris alignment: demand . free, normalised by node capacity"

    def choose(self, state, pod, c):
        terms = [(pod.cpu_milli, state.cpu_free, state.cpu_cap), (pod.memory_mib, state.mem_free, state.mem_cap),
                 (pod.demand_milli, state.gpu_free.sum(axis=1), state.gpu_cap)]
        score = sum(np.where(cap > 0, demand * free / np.maximum(cap, 1).astype(np.float64) ** 2, 0.0)
                    for demand, free, cap in terms)
        node = first_max(score, c.feasible)
        if node is None:
            return None
        if pod.kind == "share":
            free = np.where(c.fits[node], state.gpu_free[node], -1)
            return node, (int(np.argmax(free)),)
        return node, default_gpus(state, pod, node, c)


class GpuPacking(Policy):
    name = "gpu-packing"
    description = "occupied GPUs first, then active nodes, then idle nodes"

    def choose(self, state, pod, c):
        if not c.feasible.any():
            return None
        used_node = state.node_used()
        if pod.kind == "share":
            partly = c.fits & (state.gpu_free < MILLI)  # a share fits on an occupied GPU
            tier = np.where(partly, 0, np.where(used_node[:, None], 1, 2))
            tier = np.where(c.fits & c.feasible[:, None], tier, 3)
            flat = int(np.argmin(tier))  # row-major: node order, then GPU index
            node, gpu = divmod(flat, tier.shape[1])
            return node, (gpu,)
        tier = np.where(c.feasible, np.where(used_node, 1, 2), 3)
        node = int(np.argmin(tier))
        return node, default_gpus(state, pod, node, c)


def baselines() -> dict[str, Callable[[], Policy]]:
    return {p.name: p for p in (Spread, MostAllocated, BestFit, Random, DotProduct, GpuPacking)}
