"""FGD's fragmentation measure and the FGD policy, written from the paper's definitions
(Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with
Fragmentation Gradient Descent", USENIX ATC'23, section 4), in milli-GPUs.

Target workload M: the task classes of the trace with their popularity p_m (the share
of the trace's pods in that class). A class is a distinct (cpu_milli, memory_mib,
num_gpu, gpu_milli, gpu_spec).

Fragmentation of node n for task m, F_n(m), with R_g the free milli of GPU g:
- m cannot run on n at all (not enough CPU or memory, a GPU model it does not accept,
  no GPU with R_g >= its share, fewer wholly free GPUs than it needs): every free GPU
  milli of n is a fragment, sum_g R_g;
- m is CPU-only: the same (no free GPU capacity is of use to it);
- otherwise the free milli on GPUs that cannot host it: sum_g R_g [R_g < min(d_m, 1000)]
  with d_m its per-GPU demand (1000 for whole GPUs).
F_n(M) = sum_m p_m F_n(m); the cluster's is the sum over nodes.

With U_s = sum_g R_g [R_g >= d_s] (free milli usable by GPU shape s) and q_s the
popularity of the classes of shape s that fit n's CPU, memory and GPU model, this is
F_n(M) = sum_g R_g - sum_s q_s [enough GPUs host s] U_s, which is what is computed.

FGD places each pod on the node (and, for a share, the GPU) where F_n(M) grows least:
delta = F_n(M) after - F_n(M) before; ties by node order, then GPU index.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from benchmarks.placement.policies import Choice, Policy, default_gpus
from benchmarks.placement.state import MODELS, Candidates, State
from benchmarks.placement.trace import MILLI, Pod, Pods


class TargetWorkload:
    """The trace's task classes and their popularity.

    Popularity is kept as pod counts, so F_n(M) is an exact integer (milli-GPUs x pods)
    and equal nodes tie exactly; `scale` (the trace's pod count) turns it into milli-GPUs."""

    def __init__(self, pods: Pods):
        classes = Counter((p.cpu_milli, p.memory_mib, p.num_gpu, p.gpu_milli, p.gpu_spec) for p in pods.pods)
        # CPU-only classes first, then grouped by GPU shape (num_gpu, gpu_milli)
        keys = sorted(classes, key=lambda k: (k[2], k[3], k[0], k[1], sorted(k[4])))
        self.scale = max(sum(classes.values()), 1)
        self.shapes = sorted({(k[2], k[3]) for k in keys if k[2] > 0})  # (num_gpu, gpu_milli)
        self.classes = len(keys)
        self.cpu = np.array([k[0] for k in keys], np.int64)
        self.mem = np.array([k[1] for k in keys], np.int64)
        self.count = np.array([classes[k] for k in keys], np.int64)
        spec_ok = np.array([[not k[4] or m in k[4] for m in MODELS] for k in keys], bool).reshape(len(keys), len(MODELS))
        self._spec_by_model = np.ascontiguousarray(spec_ok.T)  # [models, K]
        shape_of = [self.shapes.index((k[2], k[3])) if k[2] else -1 for k in keys]
        self._gpu_from = sum(1 for s in shape_of if s < 0)  # first GPU class
        self._starts = np.array([shape_of.index(i) for i in range(len(self.shapes))], np.int64) - self._gpu_from
        self.need = np.array([n if m == MILLI else 1 for n, m in self.shapes], np.int64)  # GPUs that must host it
        self.d = np.array([m for _, m in self.shapes], np.int64)  # per-GPU milli

    def q(self, cpu_free: np.ndarray, mem_free: np.ndarray, model_code: np.ndarray) -> np.ndarray:
        """[n,S] pods of each shape's classes that fit the nodes' CPU, memory and GPU model."""
        g = slice(self._gpu_from, None)
        if not len(self.shapes):
            return np.zeros((len(cpu_free), 0), np.int64)
        ok = (cpu_free[:, None] >= self.cpu[g]) & (mem_free[:, None] >= self.mem[g]) & self._spec_by_model[model_code][:, g]
        return np.add.reduceat(ok * self.count[g], self._starts, axis=1)

    def gpu_terms(self, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([n,S] GPUs with free >= d_s, [n,S] free milli on them) for free [n,G]."""
        m = free[:, :, None] >= self.d
        return m.sum(axis=1), (free[:, :, None] * m).sum(axis=1)

    def fragmentation(self, free_sum: np.ndarray, q: np.ndarray, ge: np.ndarray, usable: np.ndarray) -> np.ndarray:
        """[n] F_n(M) x scale (milli-GPUs x pods, exact); arguments may carry extra middle
        axes (candidate GPUs)."""
        return free_sum * self.scale - (q * (ge >= self.need) * usable).sum(axis=-1)


def measure(state: State, w: TargetWorkload) -> dict[str, float]:
    """Cluster-wide GPU fragmentation now, in GPUs:
    - fgd_fragmented_gpus: FGD's F(M), the expected free GPU capacity the next pod
      (drawn from the trace's mix) could not use where it lies;
    - stranded_gpus: free GPU capacity that no class of the trace could use at all
      (its node cannot host any class that fits that GPU's free share);
    - unallocated_gpus: all free GPU capacity."""
    free = state.gpu_free
    q = w.q(state.cpu_free, state.mem_free, state.model_code)
    ge, usable = w.gpu_terms(free)
    frag = w.fragmentation(free.sum(axis=1), q, ge, usable)
    shape_ok = (q > 0) & (ge >= w.need)  # [N,S] some class of shape s can run on n
    gpu_usable = (shape_ok[:, None, :] & (free[:, :, None] >= w.d)).any(axis=2)  # [N,G]
    stranded = np.where(gpu_usable, 0, free).sum()
    return {"fgd_fragmented_gpus": float(frag.sum()) / w.scale / MILLI, "stranded_gpus": float(stranded) / MILLI,
            "unallocated_gpus": float(free.sum()) / MILLI}


class FGD(Policy):
    name = "fgd"
    description = "Fragmentation Gradient Descent (Weng et al., ATC'23), from the paper"

    def start(self, state: State, workload: Pods, seed: int) -> None:
        self.w = TargetWorkload(workload)
        self.q = self.w.q(state.cpu_free, state.mem_free, state.model_code)
        self.ge, self.usable = self.w.gpu_terms(state.gpu_free)
        self.frag = self.w.fragmentation(state.gpu_free.sum(axis=1), self.q, self.ge, self.usable)

    def deltas(self, state: State, pod: Pod, c: Candidates) -> tuple[np.ndarray, np.ndarray]:
        """(rows, delta in milli-GPUs): for shares delta is [C,G] (inf where the GPU does not
        fit), else [C]. Exact integers divided by one constant, so equal nodes tie exactly."""
        w = self.w
        r = np.flatnonzero(c.feasible)
        q2 = w.q(state.cpu_free[r] - pod.cpu_milli, state.mem_free[r] - pod.memory_mib, state.model_code[r])
        free_sum = state.gpu_free[r].sum(axis=1)
        ge, usable = self.ge[r], self.usable[r]
        if pod.kind == "share":
            d = pod.gpu_milli
            R = state.gpu_free[r][:, :, None]  # [C,G,1]
            a, b = R >= w.d, (R - d) >= w.d  # [C,G,S]: GPU hosts shape s before / after
            ge2 = ge[:, None, :] - a + b
            usable2 = usable[:, None, :] - R * a + (R - d) * b
            after = w.fragmentation((free_sum - d)[:, None], q2[:, None, :], ge2, usable2)  # [C,G]
            return r, np.where(c.fits[r], (after - self.frag[r][:, None]) / w.scale, np.inf)
        if pod.kind == "whole":
            k = pod.num_gpu  # k wholly free GPUs go: each counted for every shape
            after = w.fragmentation(free_sum - k * MILLI, q2, ge - k, usable - k * MILLI)
            delta = after - self.frag[r]
        else:
            delta = w.fragmentation(free_sum, q2, ge, usable) - self.frag[r]
        return r, delta / w.scale

    def choose(self, state: State, pod: Pod, c: Candidates) -> Choice | None:
        r, delta = self.deltas(state, pod, c)
        if len(r) == 0:
            return None
        if pod.kind == "share":
            i, g = divmod(int(np.argmin(delta)), delta.shape[1])
            return int(r[i]), (g,)
        node = int(r[int(np.argmin(delta))])
        return node, default_gpus(state, pod, node, c)

    def placed(self, state: State, pod: Pod, choice: Choice) -> None:
        n = choice[0]
        one = slice(n, n + 1)
        self.q[n] = self.w.q(state.cpu_free[one], state.mem_free[one], state.model_code[one])[0]
        ge, usable = self.w.gpu_terms(state.gpu_free[one])
        self.ge[n], self.usable[n] = ge[0], usable[0]
        self.frag[n] = self.w.fragmentation(state.gpu_free[one].sum(axis=1), self.q[one], ge, usable)[0]
