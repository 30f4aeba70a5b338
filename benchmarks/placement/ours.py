"""gpusched's placement, as the extender decides it: scheduler.core, byte for byte.

The trace's nodes become a ClusterSnapshot built once (build_snapshot over NodeStates
as a node without a gpusched agent report looks: allocatable nvidia.com/gpu and the
`nvidia.com/gpu.memory` label, memory per ALIBABA_GPU_MIB). Each placement is counted
with `with_allocation`, as the extender's bind does (`live.assume`).

A pod becomes the PodRequest its chart would ask for:
- whole GPUs: `nvidia.com/gpu: N`;
- a share: `gpusched.io/gpu-memory` of gpu_milli/1000 of the GPU's memory (bytes,
  rounded down). The trace's share is of whatever GPU the pod lands on, while a
  request names bytes; so a share is asked once per GPU memory size in the cluster
  (restricted to the products of that size), and each request goes through
  filter_rows and score_rows on its own;
- gpu_spec: PodRequest.products (the products ALIBABA_GPU_MIB maps those models to).

Candidates are the nodes whose CPU and memory fit (kube-scheduler's NodeResourcesFit);
the core filters them. When one request covers the pod (whole GPUs, CPU-only, or one
GPU size), the choice is the highest of prioritize's 0..10 scores, drawn at random
among ties (seeded), as kube-scheduler's selectHost draws. Breaking them in node order,
as this replay did before, flattered gpusched: on gpuspec33 the trace lists T4 nodes
last, so pods free to go anywhere filled the other models first and left T4s to the pods
pinned to them; at random they did not (seed 1: 795.9 unallocated GPUs in node order,
1,115.0 at random, FGD 891.0), until learned shapes carried pins. With several sizes, each
candidate's unrounded total (weights x the components in ScoreDetails) is normalised
over all of them as prioritize normalises one call (best = 10, rounded), then the same
rule applies; tests check this reproduces prioritize's own scores. The GPUs are then
assign_gpus's choice on that node, as at bind.

CPU-only pods are not gpusched's: the simulator places them with kube-scheduler's
default scoring for every policy (policies.kube_default). Called for one anyway, this
policy answers as the extender would: every node scores 0, the first that fits wins.

`exact=True` (the `gpusched-exact` row) picks the highest unrounded total instead: not
what kube-scheduler sees, it shows what the 11 integer levels and the draw among them do
(it left more GPUs unallocated than the levels on 24 of 36 runs, measured before the
fed-GPU count: docs/benchmarks.md).
"""
from __future__ import annotations

from itertools import compress
from typing import Sequence

import numpy as np

from benchmarks.placement.policies import GPUSCHED_TIES_STREAM, Choice, Policy, drawn_max
from benchmarks.placement.state import Candidates, State
from benchmarks.placement.trace import MILLI, Nodes, Pod, Pods
from benchmarks.testbed.profiles import ALIBABA_GPU_MIB
from scheduler.core import (Allocation, NodeState, PodRequest, ScoreDetails, Shape, Weights, assign_gpus,
                            build_snapshot, filter_rows, score_rows, workload_shapes)
from scheduler.core.scoring import levels
from scheduler.nodeinfo import MiB

STALE_AFTER_S = 3600.0  # nodes without an agent report are never stale; the value is not used


def node_states(nodes: Nodes) -> list[NodeState]:
    return [NodeState(name, gpu_count=int(g), product=ALIBABA_GPU_MIB[m][0], gpu_memory_label_mib=ALIBABA_GPU_MIB[m][1],
                      cpu_allocatable=int(cpu), ram_allocatable=int(mem) * MiB)
            for name, g, m, cpu, mem in zip(nodes.names, nodes.gpus, nodes.model, nodes.cpu_milli, nodes.memory_mib)]


def product_names(models: frozenset[str]) -> frozenset[str]:
    """The nvidia.com/gpu.product values of trace GPU models."""
    return frozenset(ALIBABA_GPU_MIB[m][0] for m in models)


def allocation(pod_key: str, req: PodRequest, gpu_ids: Sequence[int], memory_per_gpu: int,
               pinned: frozenset[str] = frozenset()) -> Allocation:
    """What the extender's bind counts for a placed pod; ``pinned``: the products its
    gpu_spec names (a share's request also names the products of one GPU size, which is
    the simulator's split, not the pod's pin)."""
    return Allocation(pod_key=pod_key, gpu_ids=tuple(gpu_ids), memory_per_gpu=memory_per_gpu,
                      whole=req.whole_gpus > 0, count=len(gpu_ids), cpu_milli=req.cpu_milli, ram=req.ram,
                      products=pinned)


# The extender re-estimates the workload's shapes at each snapshot rebuild (every 10 s at
# most), from the pods placed and the whole-GPU pods pending; the replay has no clock, so
# it does so every this many placements.
RELEARN_EVERY = 100


class Gpusched(Policy):
    name = "gpusched"
    description = ("scheduler.core filter_rows + score_rows (default Weights; shapes learned from the pods "
                   "placed so far and the whole-GPU pods that fit nowhere, as the extender learns them from the "
                   "pods it counts and those pending) + assign_gpus")

    def __init__(self, weights: Weights | None = None, exact: bool = False, shapes: Sequence[Shape] | None = None):
        self.weights = weights or Weights()
        self.exact = exact
        self.fixed_shapes = shapes  # None: learned, as the extender does
        if exact:
            self.name = "gpusched-exact"
            self.description = "as gpusched, but the highest unrounded score wins (not what the extender returns)"

    def start(self, state: State, workload: Pods, seed: int) -> None:
        self.snapshot = build_snapshot(node_states(state.nodes), now=0.0, stale_after_s=STALE_AFTER_S)
        self.shapes = tuple(self.fixed_shapes) if self.fixed_shapes is not None else workload_shapes(self.snapshot)
        self._placed = 0
        self.pending: list[PodRequest] = []  # whole-GPU pods that found no node (never retried here)
        # kube-scheduler's selectHost draws among the nodes of the highest score; a stream of its own,
        # apart from inflate's pod draws (default_rng(seed)) and the CPU-only pods' tie draws
        self.rng = np.random.default_rng([seed, GPUSCHED_TIES_STREAM])
        self.names = np.array(state.names, dtype=object)
        # GPU memory sizes in the cluster -> the trace models of that size
        sizes: dict[int, set[str]] = {}
        for m in set(state.nodes.model):
            sizes.setdefault(ALIBABA_GPU_MIB[m][1], set()).add(m)
        self.sizes = sorted((mib, frozenset(models)) for mib, models in sizes.items())
        # per request of the last pod: (request, feasible nodes, prioritize scores, details)
        self.last: list[tuple[PodRequest, list[str], list[int], ScoreDetails]] = []

    def requests(self, pod: Pod) -> list[PodRequest]:
        spec = pod.gpu_spec
        products = product_names(spec)
        ram = pod.memory_mib * MiB
        if pod.kind == "cpu":
            return [PodRequest(cpu_milli=pod.cpu_milli, ram=ram)]
        if pod.kind == "whole":
            return [PodRequest(whole_gpus=pod.num_gpu, products=products, cpu_milli=pod.cpu_milli, ram=ram)]
        out = []
        for mib, models in self.sizes:
            accepted = models & spec if spec else models
            if accepted:
                out.append(PodRequest(gpu_memory=pod.gpu_milli * mib * MiB // MILLI,
                                      products=product_names(accepted),
                                      cpu_milli=pod.cpu_milli, ram=ram))
        return out

    def choose(self, state: State, pod: Pod, c: Candidates) -> Choice | None:
        names = self.names[c.resources].tolist()
        rows = self.snapshot.indices(names)
        self.last = []
        for req in self.requests(pod):
            ok, _ = filter_rows(self.snapshot, req, rows)
            if ok.any():
                details = score_rows(self.snapshot, req, rows[ok], self.weights, self.shapes)
                self.last.append((req, list(compress(names, ok.tolist())), details.score.tolist(), details))
        if not self.last:
            if pod.kind == "whole":
                # it stays Pending in a cluster, where the extender learns from pending pods too
                self.pending.extend(self.requests(pod))
            return None
        if len(self.last) == 1 and not self.exact:
            req, feasible, scores, _ = self.last[0]
            return self._bind(pod, req, feasible[self._draw(np.asarray(scores))])
        totals = np.concatenate([d.total for *_, d in self.last])
        value = totals if self.exact else levels(totals, np.concatenate([d.untouched for *_, d in self.last]))
        which = np.concatenate([np.full(len(f), k) for k, (_, f, _, _) in enumerate(self.last)])
        at = np.concatenate([np.arange(len(f)) for _, f, _, _ in self.last])
        best = self._draw(value)
        req, feasible, _, _ = self.last[int(which[best])]
        return self._bind(pod, req, feasible[int(at[best])])

    def _draw(self, value: np.ndarray) -> int:
        """One of the positions of the highest value, at random, as kube-scheduler's selectHost
        picks among the nodes of the highest total score (the extender's score is all that
        differs between nodes here; other score plugins see alike nodes alike)."""
        pick = drawn_max(value, np.ones(len(value), bool), self.rng)
        assert pick is not None  # called only with candidates
        return pick

    def placed(self, state: State, pod: Pod, choice: Choice) -> None:
        """Every pod the simulator placed, CPU-only ones too, holds CPU and memory on its
        node: the snapshot's requested columns follow, as the extender's pod watch keeps them."""
        node = choice[0]
        self.snapshot = self.snapshot.with_requested(
            {state.names[node]: (int(state.cpu_cap[node] - state.cpu_free[node]),
                                 int(state.mem_cap[node] - state.mem_free[node]) * MiB)})

    def _bind(self, pod: Pod, req: PodRequest, node: str) -> Choice:
        row = self.snapshot.index[node]
        if not req.gpu_pod:
            return row, ()
        a = assign_gpus(self.snapshot, node, req)
        if not a.gpu_ids:
            raise RuntimeError(f"assign_gpus refused {pod.key} on {node} after filter passed it: {a.reason}")
        pinned = product_names(pod.gpu_spec)
        self.snapshot = self.snapshot.with_allocation(node, allocation(pod.key, req, a.gpu_ids, a.memory_per_gpu,
                                                                       pinned))
        self._placed += 1
        if self.fixed_shapes is None and self._placed % RELEARN_EVERY == 0:
            self.shapes = workload_shapes(self.snapshot, pending=self.pending)
        return row, tuple(a.gpu_ids)
