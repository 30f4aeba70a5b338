"""The simulated cluster in the trace's own units, shared by every policy.

GPU capacity is counted in milli-GPUs, as the trace asks for it (1000 = one GPU,
whatever its model); CPU in millicores and host memory in MiB. The simulator checks
each pod against this state (CPU and memory as kube-scheduler's NodeResourcesFit
would, GPUs by share), applies the chosen placement, and measures every policy the
same way. Policies that keep their own view (gpusched's ClusterSnapshot in bytes)
are checked against it at every step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.placement.trace import MILLI, Nodes, Pod

# Trace GPU models in a fixed order: codes index this tuple.
from benchmarks.testbed.profiles import ALIBABA_GPU_MIB

MODELS: tuple[str, ...] = tuple(ALIBABA_GPU_MIB)

# kube-scheduler scores a request of 0 as these (NonZeroRequested: DefaultMilliCPURequest,
# DefaultMemoryRequest), so pods that ask for nothing are still spread.
NONZERO_CPU_MILLI = 100
NONZERO_MEMORY_MIB = 200


def nonzero_requests(cpu_milli: int, memory_mib: int) -> tuple[int, int]:
    return cpu_milli or NONZERO_CPU_MILLI, memory_mib or NONZERO_MEMORY_MIB


class SimulationError(RuntimeError):
    """A policy chose a placement the cluster cannot hold: a bug, never bad input."""


@dataclass
class Candidates:
    """Where one pod could go, over all nodes (the simulator computes it once per pod)."""
    resources: np.ndarray  # [N] CPU and memory fit (NodeResourcesFit)
    spec: np.ndarray  # [N] the node's GPU model is one the pod accepts
    fits: np.ndarray  # [N,G] GPUs that can host it: a share's free >= gpu_milli, or wholly free
    gpu_ok: np.ndarray  # [N] enough such GPUs (CPU-only pods: everywhere)
    feasible: np.ndarray  # [N] all of the above


class State:
    def __init__(self, nodes: Nodes):
        self.nodes = nodes
        self.names = nodes.names
        n = len(nodes)
        width = max(int(nodes.gpus.max(initial=0)), 1)
        self.present = np.arange(width)[None, :] < nodes.gpus[:, None]
        self.model_code = np.array([MODELS.index(m) for m in nodes.model], np.int64)
        self.cpu_cap = nodes.cpu_milli.copy()
        self.mem_cap = nodes.memory_mib.copy()
        self.gpu_cap = nodes.gpus * MILLI  # [N] milli
        self.cpu_free = nodes.cpu_milli.copy()
        self.mem_free = nodes.memory_mib.copy()
        # what kube-scheduler's scoring counts as requested on each node (non-zero requests)
        self.cpu_scored = np.zeros(n, np.int64)
        self.mem_scored = np.zeros(n, np.int64)
        self.gpu_free = np.where(self.present, MILLI, 0).astype(np.int64)  # [N,G]
        self.total_milli = int(self.gpu_cap.sum())
        self.allocated_milli = 0
        self.placed: list[tuple[str, int, tuple[int, ...]]] = []
        self._spec_masks: dict[frozenset[str], np.ndarray] = {frozenset(): np.ones(n, bool)}

    def __len__(self) -> int:
        return len(self.names)

    # ---------- per pod

    def spec_mask(self, spec: frozenset[str]) -> np.ndarray:
        m = self._spec_masks.get(spec)
        if m is None:
            m = np.isin(self.model_code, [MODELS.index(x) for x in spec])
            self._spec_masks[spec] = m
        return m

    def candidates(self, pod: Pod) -> Candidates:
        resources = (self.cpu_free >= pod.cpu_milli) & (self.mem_free >= pod.memory_mib)
        spec = self.spec_mask(pod.gpu_spec)
        kind = pod.kind
        if kind == "cpu":
            fits = np.zeros_like(self.present)
            gpu_ok = np.ones(len(self), bool)
        elif kind == "share":
            fits = self.gpu_free >= pod.gpu_milli
            gpu_ok = fits.any(axis=1)
        else:
            fits = self.gpu_free == MILLI
            gpu_ok = fits.sum(axis=1) >= pod.num_gpu
        return Candidates(resources, spec, fits, gpu_ok, resources & spec & gpu_ok)

    def node_used(self) -> np.ndarray:
        """[N] some GPU of the node is (partly) allocated."""
        return (self.present & (self.gpu_free < MILLI)).any(axis=1)

    def apply(self, pod: Pod, node: int, gpus: tuple[int, ...]) -> None:
        """Count `pod` on `node`'s `gpus`, after checking that it fits there."""
        where = f"pod {pod.key} (line {pod.line}) on {self.names[node] if 0 <= node < len(self) else node}"
        if not 0 <= node < len(self):
            raise SimulationError(f"{where}: no such node")
        if self.cpu_free[node] < pod.cpu_milli or self.mem_free[node] < pod.memory_mib:
            raise SimulationError(f"{where}: not enough CPU or memory")
        if not self.spec_mask(pod.gpu_spec)[node]:
            raise SimulationError(f"{where}: GPU model {MODELS[self.model_code[node]]} not in {sorted(pod.gpu_spec)}")
        kind = pod.kind
        ids = list(gpus)
        if kind == "cpu":
            if ids:
                raise SimulationError(f"{where}: a CPU-only pod was given GPUs {ids}")
        else:
            want = 1 if kind == "share" else pod.num_gpu
            if len(ids) != want or len(set(ids)) != want or not all(0 <= g < self.present.shape[1] for g in ids):
                raise SimulationError(f"{where}: GPUs {ids} for a pod that needs {want}")
            if not self.present[node, ids].all():
                raise SimulationError(f"{where}: GPUs {ids} not all present")
            need = pod.gpu_milli if kind == "share" else MILLI
            if (self.gpu_free[node, ids] < need).any():
                raise SimulationError(f"{where}: GPUs {ids} have {self.gpu_free[node, ids].tolist()} milli free, "
                                      f"pod needs {need} each")
            self.gpu_free[node, ids] -= need
        self.cpu_free[node] -= pod.cpu_milli
        self.mem_free[node] -= pod.memory_mib
        cpu_nz, mem_nz = nonzero_requests(pod.cpu_milli, pod.memory_mib)
        self.cpu_scored[node] += cpu_nz
        self.mem_scored[node] += mem_nz
        self.allocated_milli += pod.demand_milli
        self.placed.append((pod.key, node, tuple(ids)))
