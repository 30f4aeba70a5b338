"""Trace replay, the FGD paper's method (Weng et al., USENIX ATC'23, section 6).

Pods arrive one by one in creation order and never leave; each policy places each pod
on the same empty cluster until the first pod that fits nowhere (CPU, memory, GPU
model and GPU capacity all checked). Every step records the GPU capacity allocated and
the GPU demand arrived so far (milli-GPUs), and every `sample_every` pods (and at the
end) how much free GPU capacity is fragmented (fgd.measure). The headline figure is
the GPU allocation ratio at the first failure: allocated / total GPU capacity.

With keep_going the replay skips pods that fit nowhere and runs to the end of the
trace (the curves then cover all of it); the first-failure figures are the same.

CPU-only pods are placed by the cluster's default kube-scheduler for every policy
(policies.kube_default, ties drawn at random as selectHost draws, seeded): they are not
a GPU scheduler's pods.

Monte Carlo inflation (`inflate`, the paper's section 6.1 evaluation): pods drawn from
the pod list with replacement (seeded) until the GPU demand arrived reaches a multiple
of the cluster's GPU capacity (1.3 in the paper); the replay keeps going past pods
that fit nowhere and records, each time the arrived demand crosses another percent of
capacity, the unallocated and fragmented GPUs (`levels`). The headline figure is the
unallocated GPUs when the arrived demand first reaches 100% of capacity.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from benchmarks.placement import fgd, ours, policies
from benchmarks.placement.policies import Policy
from benchmarks.placement.state import SimulationError, State
from benchmarks.placement.trace import MILLI, Nodes, Pod, Pods

from benchmarks.placement.cli import DEFAULT_POLICIES, POLICY_ORDER  # noqa: F401  (table order)


def make_policy(name: str) -> Policy:
    if name == "gpusched":
        return ours.Gpusched()
    if name == "gpusched-exact":
        return ours.Gpusched(exact=True)
    if name == "fgd":
        return fgd.FGD()
    base = policies.baselines()
    if name not in base:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICY_ORDER)}")
    return base[name]()


def describe(pod: Pod) -> str:
    if pod.kind == "cpu":
        gpu = "no GPU"
    elif pod.kind == "share":
        gpu = f"{pod.gpu_milli / MILLI:.3g} of a GPU"
    else:
        gpu = f"{pod.num_gpu} whole GPU{'s' if pod.num_gpu > 1 else ''}"
    spec = f" of {'|'.join(sorted(pod.gpu_spec))}" if pod.gpu_spec else ""
    return f"{gpu}{spec}, {pod.cpu_milli / 1000:g} CPU, {pod.memory_mib} MiB"


def inflate(pods: Pods, capacity_milli: int, factor: float, seed: int) -> Pods:
    """Pods drawn uniformly with replacement from `pods` (numpy Generator seeded by `seed`)
    until their GPU demand reaches `factor` x `capacity_milli`; each copy keyed
    `name#i` (i: its arrival), as the extender keys pods by name."""
    if not factor > 0:
        raise ValueError(f"inflate factor must be positive, got {factor}")
    demand = np.array([p.demand_milli for p in pods.pods], np.int64)
    if demand.sum() == 0:
        raise ValueError(f"{pods.path}: no pod asks for a GPU; GPU demand cannot reach {factor:g}x capacity")
    rng = np.random.default_rng(seed)
    target = factor * capacity_milli
    picks: list[np.ndarray] = []
    arrived = 0
    mean = max(float(demand.mean()), 1.0)
    while arrived < target:  # draw in batches; cut at the pod that reaches the target
        batch = rng.integers(len(pods.pods), size=int((target - arrived) / mean * 1.1) + 16)
        cum = arrived + np.cumsum(demand[batch])
        stop = int(np.searchsorted(cum, target))  # first index with cum >= target
        if stop < len(batch):
            picks.append(batch[:stop + 1])
            break
        picks.append(batch)
        arrived = int(cum[-1])
    order = np.concatenate(picks)
    out = tuple(Pod(f"{pods.pods[i].key}#{k}", pods.pods[i].line, pods.pods[i].cpu_milli, pods.pods[i].memory_mib,
                    pods.pods[i].num_gpu, pods.pods[i].gpu_milli, pods.pods[i].gpu_spec)
                for k, i in enumerate(order.tolist()))
    return Pods(pods.path, out, f"drawn with replacement (seed {seed}) to {factor:g}x GPU capacity", 0)


@dataclass
class Result:
    trace: str
    policy: str
    description: str
    pods_total: int
    pods_placed: int  # before the first failure
    gpu_allocation_at_first_failure: float  # allocated / total GPU capacity; at the end if none failed
    allocated_gpus: float
    total_gpus: float
    arrived_demand_at_first_failure: float  # GPU demand arrived (incl. the failing pod) / capacity
    stranded_gpus: float  # at the first failure (see fgd.measure)
    fgd_fragmented_gpus: float
    unallocated_gpus: float
    first_failure: dict | None  # the pod that fit nowhere
    runtime_s: float
    seed: int = 0
    unallocated_gpus_at_100pct: float | None = None  # when the arrived GPU demand first reaches capacity
    fgd_fragmented_gpus_at_100pct: float | None = None
    pods_placed_total: int = 0  # with keep_going: all pods placed over the whole trace
    gpu_allocation_at_end: float = 0.0
    # curves: per arrived pod, milli-GPUs; fragmentation sampled
    arrived_milli: list[int] = field(default_factory=list, repr=False)
    allocated_milli: list[int] = field(default_factory=list, repr=False)
    samples: list[dict] = field(default_factory=list, repr=False)
    levels: list[dict] = field(default_factory=list, repr=False)  # one per percent of capacity arrived

    CURVES = ("arrived_milli", "allocated_milli", "samples", "levels")

    def row(self) -> dict:
        """The JSON row (curves are written apart)."""
        return {k: v for k, v in self.__dict__.items() if k not in self.CURVES}


def replay(nodes: Nodes, pods: Pods, policy: Policy, seed: int, *, workload: Pods | None = None,
           keep_going: bool = False, sample_every: int = 50, levels: bool = False,
           progress: Callable[[int], None] | None = None) -> Result:
    """Replay `pods` on an empty cluster of `nodes` with `policy`. `workload` (default:
    `pods`) is the trace whose mix FGD's target workload is derived from (gpusched learns
    its shapes from the pods it placed and the whole-GPU pods that fit nowhere). `levels`:
    also record the figures at every percent of capacity the arrived GPU demand crosses."""
    t0 = time.perf_counter()
    state = State(nodes)
    target = fgd.TargetWorkload(workload or pods)
    policy.start(state, workload or pods, seed)
    # ties among the default scheduler's scores for CPU-only pods: drawn, as selectHost draws, from a
    # stream of their own (not inflate's pod draws nor a policy's)
    cpu_rng = np.random.default_rng([seed, policies.CPU_TIES_STREAM])
    arrived, allocated, samples = [], [], []
    arrived_now = 0
    first: dict | None = None
    at_failure: dict = {}
    placed = 0
    done = 0

    def sample(step: int) -> dict:
        return {"pods": step, "arrived_milli": arrived_now, "allocated_milli": state.allocated_milli,
                **fgd.measure(state, target)}

    level_at: list[dict] = []
    next_level = 1  # percent of capacity

    for i, pod in enumerate(pods.pods):
        c = state.candidates(pod)
        choice = policies.kube_default(state, pod, c, cpu_rng) if pod.kind == "cpu" else policy.choose(state, pod, c)
        arrived_now += pod.demand_milli
        if choice is None:
            if c.feasible.any():
                raise SimulationError(f"{policy.name} found no node for pod {pod.key} (line {pod.line}) but "
                                      f"{int(c.feasible.sum())} nodes can hold it")
            if first is None:
                first = {"pod": pod.key, "line": pod.line, "index": i, "demand": describe(pod)}
                at_failure = sample(i)
                placed_at_failure = placed
                if not keep_going:
                    arrived.append(arrived_now)
                    allocated.append(state.allocated_milli)
                    done = i + 1
                    if progress:
                        progress(1)
                    break
        else:
            state.apply(pod, *choice)
            policy.placed(state, pod, choice)
            placed += 1
        arrived.append(arrived_now)
        allocated.append(state.allocated_milli)
        done = i + 1
        if levels and arrived_now * 100 >= next_level * state.total_milli:
            now = sample(done)
            while arrived_now * 100 >= next_level * state.total_milli:
                level_at.append({"percent": next_level, **now})
                next_level += 1
        if sample_every and done % sample_every == 0:
            samples.append(sample(done))
        if progress:
            progress(1)
    if progress and done < len(pods):
        progress(len(pods) - done)  # the bar counts pods not replayed after the failure as done
    if not samples or samples[-1]["pods"] != done:
        samples.append(sample(done))
    if first is None:
        at_failure = samples[-1]
        placed_at_failure = placed
    total = state.total_milli
    at100 = next((lv for lv in level_at if lv["percent"] == 100), None)
    return Result(
        trace=pods.name, policy=policy.name, description=policy.description, pods_total=len(pods),
        pods_placed=placed_at_failure,
        gpu_allocation_at_first_failure=at_failure["allocated_milli"] / total,
        allocated_gpus=at_failure["allocated_milli"] / MILLI, total_gpus=total / MILLI,
        arrived_demand_at_first_failure=at_failure["arrived_milli"] / total,
        stranded_gpus=at_failure["stranded_gpus"], fgd_fragmented_gpus=at_failure["fgd_fragmented_gpus"],
        unallocated_gpus=at_failure["unallocated_gpus"], first_failure=first,
        runtime_s=round(time.perf_counter() - t0, 2), seed=seed,
        unallocated_gpus_at_100pct=at100["unallocated_gpus"] if at100 else None,
        fgd_fragmented_gpus_at_100pct=at100["fgd_fragmented_gpus"] if at100 else None,
        pods_placed_total=placed,
        gpu_allocation_at_end=state.allocated_milli / total,
        arrived_milli=arrived, allocated_milli=allocated, samples=samples, levels=level_at,
    )


def run(nodes: Nodes, traces: Iterable[Pods], names: Iterable[str], seed: int, *, keep_going: bool = False,
        progress: Callable[[int], None] | None = None) -> list[Result]:
    out = []
    for pods in traces:
        for name in names:
            out.append(replay(nodes, pods, make_policy(name), seed, keep_going=keep_going, progress=progress))
    return out
