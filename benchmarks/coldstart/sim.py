"""The discrete-event simulation: replicas start, load their weights, serve and stop.

Cluster: `nodes` nodes of 8 x H100 80GB, each with a gpusched node report (its GPUs,
its model cache, reported now) and a `NodeCache` (host memory and disk, LRU).

Events, in time order (at equal times: stops, then readies, then starts; then in the
order they were scheduled):
- start: a replica of a model asks to be placed. The policy decides on a
  ClusterSnapshot built as the extender builds it (scheduler.core.build_snapshot over
  NodeStates: the node reports and the allocations of placed replicas; updated with
  with_allocation / without_allocation between rebuilds, and rebuilt when a node's
  report changes, as LiveState does). If nothing fits, the replica waits (pending)
  and is tried again, oldest first, after every stop.
- ready: `start_s + bytes / bandwidth[source]` after placement, where source is the
  fastest place on the chosen node holding the weights at that moment: a GPU of a
  running replica of the same model ("gpu"), host memory, local disk, else the
  remote store. The node's cache then records the load (see cache.py) and its report
  lists the model in tier gpu while a replica of it runs there.
- stop: `lifetime` after ready; the replica's GPUs are released; its weights stay in
  the node's host-memory and disk tiers until evicted.

Per replica it records where it went, whether that node had the model cached (any
tier) in the report the policy saw, whether some node caching the model had room
(passed filter_rows), the load source and the time to ready. Replicas that start
before `warmup_s` are simulated but not counted (caches start empty).

Policies:
- gpusched: scheduler.core filter_rows + score_rows (default Weights; the workload
  shapes re-learned at each rebuild with workload_shapes from the replicas placed and
  those waiting, as the extender does) +
  assign_gpus; the node with the highest 0..10 score, first in node order
  on ties (kube-scheduler breaks ties at random), as benchmarks/placement/ours.py;
- no-locality: the same with Weights(locality=0);
- spread: kube-scheduler's default NodeResourcesFit LeastAllocated on GPU memory:
  among the nodes filter_rows passes (so the baseline never places what cannot
  fit), the one with the largest share of its GPU memory free after the placement,
  first in node order on ties; GPUs then as assign_gpus picks them (best fit).
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import compress
from typing import Callable, Mapping, Sequence

import numpy as np

from benchmarks.coldstart.cache import NodeCache
from benchmarks.coldstart.catalogue import H100_USABLE_BYTES, Model
from benchmarks.coldstart.workload import Arrival
from benchmarks.placement.ours import allocation
from benchmarks.placement.policies import first_max
from scheduler.core import (ClusterSnapshot, NodeState, PodRequest, Shape, Weights, assign_gpus, build_snapshot,
                            filter_rows, score_rows)
from scheduler.core.scoring import DEFAULT_SHAPES, workload_shapes
from scheduler.nodeinfo import GPU, CachedModel, NodeReport

GiB = 2**30
PRODUCT = "NVIDIA H100 80GB HBM3"
GPUS_PER_NODE = 8
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)  # simulated time 0, for reported-at
STALE_AFTER_S = 600.0  # the extender's default
HEARTBEAT_S = 60.0  # the node agent re-confirms an unchanged report this often (well inside STALE_AFTER_S)
SOURCES = ("gpu", "host-memory", "disk", "remote")
POLICIES = ("gpusched", "no-locality", "spread")

STOP, READY, START = 0, 1, 2  # event kinds, in the order they run at equal times


@dataclass(frozen=True)
class Params:
    nodes: int = 32
    duration_s: float = 12 * 3600.0
    warmup_s: float = 3600.0
    load: float = 0.8
    lifetime_s: float = 1800.0
    zipf: float = 1.0
    variants: int = 4
    host_cache_bytes: int = 128 * GiB
    disk_cache_bytes: int = 512 * GiB
    start_s: float = 20.0  # container start and engine init, before weights load
    bandwidth: Mapping[str, float] = field(default_factory=dict)  # bytes/s per source (SOURCES)
    seed: int = 1


def load_seconds(nbytes: int, source: str, bandwidth: Mapping[str, float]) -> float:
    """Seconds to move a model's weights from `source` into GPU memory."""
    return nbytes / bandwidth[source]


def time_to_ready(nbytes: int, source: str, bandwidth: Mapping[str, float], start_s: float) -> float:
    return start_s + load_seconds(nbytes, source, bandwidth)


@dataclass
class Replica:
    id: int
    model: int
    arrival: float
    lifetime: float
    placed_at: float = -1.0
    node: int = -1
    source: str = ""
    ttr: float = 0.0  # placement to ready
    cached: bool = False  # the chosen node's report listed the model
    cached_room: bool = False  # some node listing the model passed the filter


# ---------------------------------------------------------------- policies

def feasible_names(s: ClusterSnapshot, req: PodRequest, names: Sequence[str]) -> list[str]:
    """The names of those of `names` that can take `req`, in their order."""
    ok, _ = filter_rows(s, req, s.indices(names))
    return list(compress(names, ok.tolist()))


class Policy:
    name = "policy"
    description = ""

    def choose(self, s: ClusterSnapshot, req: PodRequest, feasible: list[str],
               shapes: Sequence[Shape] = DEFAULT_SHAPES) -> str:
        raise NotImplementedError


class Gpusched(Policy):
    def __init__(self, weights: Weights, name: str, description: str):
        self.weights, self.name, self.description = weights, name, description

    def choose(self, s, req, feasible, shapes=DEFAULT_SHAPES):
        scores = score_rows(s, req, s.indices(feasible), self.weights, shapes).score
        return feasible[int(np.argmax(scores))]  # feasible keeps node order


class Spread(Policy):
    name = "spread"
    description = "kube-scheduler default NodeResourcesFit LeastAllocated on GPU memory (after gpusched's filter)"

    def choose(self, s, req, feasible, shapes=DEFAULT_SHAPES):
        rows = s.indices(feasible)
        taken = req.whole_gpus * s.gpu_mem_total[rows].max(axis=1) if req.whole_gpus else req.gpu_memory
        share_free = (s.free_total[rows] - taken) / np.maximum(s.usable_total[rows], 1)
        return feasible[first_max(share_free.astype(np.float64), np.ones(len(rows), bool))]


def make_policy(name: str) -> Policy:
    if name == "gpusched":
        return Gpusched(Weights(), "gpusched",
                        "scheduler.core filter_rows + score_rows (default Weights) + assign_gpus")
    if name == "no-locality":
        return Gpusched(Weights(locality=0.0), "no-locality", "as gpusched with Weights(locality=0)")
    if name == "spread":
        return Spread()
    raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")


# ---------------------------------------------------------------- cluster

class Cluster:
    """Nodes, their caches, the replicas on them, and the snapshot the policy sees."""

    def __init__(self, p: Params, models: Sequence[Model]):
        self.p, self.models = p, models
        self.names = [f"gpu-node-{i:04d}" for i in range(p.nodes)]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.bytes_of = {m.name: m.bytes for m in models}
        self.caches = [NodeCache(p.host_cache_bytes, p.disk_cache_bytes) for _ in self.names]
        self.gpus = [tuple(GPU(g, f"GPU-{i:04d}-{g}", H100_USABLE_BYTES, 0, 0.0, True, PRODUCT)
                           for g in range(GPUS_PER_NODE)) for i in range(p.nodes)]
        self.allocs: list[dict[str, object]] = [{} for _ in self.names]  # node -> pod key -> Allocation
        self.serving: list[dict[int, int]] = [{} for _ in self.names]  # node -> model -> ready replicas
        self.dirty = [True] * p.nodes  # the node's report changed since the last rebuild
        self.reports: list[NodeReport | None] = [None] * p.nodes
        self.snapshot: ClusterSnapshot | None = None
        self.shapes: tuple[Shape, ...] = DEFAULT_SHAPES
        # what the replicas that found no room ask (the extender's pending pods' informer)
        self.waiting: Callable[[], list[PodRequest]] = list
        self.rebuilds = 0

    def report(self, i: int, now: float) -> NodeReport:
        """What the node agent would publish now: GPUs, and each cached model once, in its
        fastest tier (gpu while a replica of it runs here)."""
        entries = self.caches[i].entries()
        for m, n in self.serving[i].items():
            if n > 0:
                entries[self.models[m].name] = "gpu"
        cached = tuple(CachedModel(name, self.bytes_of[name], tier) for name, tier in sorted(entries.items()))
        return NodeReport(gpus=self.gpus[i], models=cached, reported_at=EPOCH + timedelta(seconds=now))

    def view(self, now: float) -> ClusterSnapshot:
        """The snapshot at `now`: rebuilt (build_snapshot over NodeStates) when a node's
        report changed or the agents' heartbeat re-confirmed them (every HEARTBEAT_S, so
        no report goes stale), else the last one, whose allocations are already current."""
        if self.snapshot is None or any(self.dirty) or EPOCH.timestamp() + now - self.snapshot.now >= HEARTBEAT_S:
            states = [NodeState(n, GPUS_PER_NODE, PRODUCT, H100_USABLE_BYTES >> 20, self.report(i, now),
                                list(self.allocs[i].values())) for i, n in enumerate(self.names)]
            self.snapshot = build_snapshot(states, now=EPOCH.timestamp() + now, stale_after_s=STALE_AFTER_S)
            # as LiveState.rebuild: fragmentation is weighed against the shapes the cluster runs
            # and those still waiting
            self.shapes = workload_shapes(self.snapshot, pending=self.waiting())
            self.dirty = [False] * len(self.names)
            self.rebuilds += 1
        return self.snapshot

    def bind(self, node: str, key: str, req: PodRequest, gpu_ids: tuple[int, ...], mem: int) -> None:
        a = allocation(key, req, gpu_ids, mem)
        self.allocs[self.index[node]][key] = a
        assert self.snapshot is not None
        self.snapshot = self.snapshot.with_allocation(node, a)

    def release(self, node: int, key: str) -> None:
        del self.allocs[node][key]
        if self.snapshot is not None:
            self.snapshot = self.snapshot.without_allocation(self.names[node], key)

    def source(self, node: int, model: int) -> str:
        """Where a replica placed on `node` now reads the weights of `model` from."""
        if self.serving[node].get(model, 0) > 0:
            return "gpu"
        return self.caches[node].tier(self.models[model].name) or "remote"


# ---------------------------------------------------------------- run

@dataclass
class Result:
    policy: str
    description: str
    replicas: list[Replica]
    counted_from: float
    pending_at_end: int
    rebuilds: int
    runtime_s: float

    def counted(self) -> list[Replica]:
        return [r for r in self.replicas if r.arrival >= self.counted_from and r.node >= 0]

    def summary(self) -> dict:
        rs = self.counted()
        ttr = np.array([r.ttr for r in rs]) if rs else np.zeros(1)
        room = [r for r in rs if r.cached_room]
        wait = np.array([r.placed_at - r.arrival for r in rs]) if rs else np.zeros(1)
        by_source = {s: sum(1 for r in rs if r.source == s) for s in SOURCES}
        return {
            "policy": self.policy, "description": self.description, "replicas": len(rs),
            "placed_on_cached": _share(sum(r.cached for r in rs), len(rs)),
            "with_cached_room": len(room),
            "placed_on_cached_when_room": _share(sum(r.cached for r in room), len(room)),
            "ttr_p50_s": round(float(np.percentile(ttr, 50)), 1),
            "ttr_p90_s": round(float(np.percentile(ttr, 90)), 1),
            "ttr_p99_s": round(float(np.percentile(ttr, 99)), 1),
            "ttr_mean_s": round(float(ttr.mean()), 1),
            "cold_loads": by_source["remote"], "loads_by_source": by_source,
            "waited_for_room": int((wait > 0).sum()), "wait_p99_s": round(float(np.percentile(wait, 99)), 1),
            "pending_at_end": self.pending_at_end, "snapshot_rebuilds": self.rebuilds,
        }

    def cdf(self, points: int = 201) -> list[float]:
        """Time to ready at `points` evenly spaced quantiles (0 to 100%), for the plot."""
        ttr = [r.ttr for r in self.counted()]
        if not ttr:
            return []
        return [round(float(v), 2) for v in np.percentile(ttr, np.linspace(0, 100, points))]


def _share(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def run(policy: Policy, p: Params, models: Sequence[Model], arrivals: Sequence[Arrival],
        progress: Callable[[int], None] | None = None) -> Result:
    t0 = time.perf_counter()
    bw = {**p.bandwidth}
    cl = Cluster(p, models)
    reqs = [m.request() for m in models]
    replicas = [Replica(i, a.model, a.t, a.lifetime) for i, a in enumerate(arrivals)]
    events: list[tuple[float, int, int, int]] = []  # (time, kind, seq, replica)
    seq = 0

    def push(t: float, kind: int, rid: int) -> None:
        nonlocal seq
        heapq.heappush(events, (t, kind, seq, rid))
        seq += 1

    for r in replicas:
        push(r.arrival, START, r.id)
    pending: list[int] = []
    cl.waiting = lambda: [reqs[replicas[q].model] for q in pending]

    def place(r: Replica, now: float) -> bool:
        s = cl.view(now)
        req = reqs[r.model]
        feasible = feasible_names(s, req, cl.names)
        if not feasible:
            return False
        node = policy.choose(s, req, feasible, cl.shapes)
        a = assign_gpus(s, node, req)
        if not a.gpu_ids:
            raise RuntimeError(f"{policy.name}: assign_gpus refused replica {r.id} on {node} after the filter "
                               f"passed it: {a.reason}")
        cache = s.model_cache.get(req.model or "")
        holding = set() if cache is None else {int(i) for i in cache.node_idx}
        row = s.index[node]
        r.cached = row in holding
        r.cached_room = bool(holding.intersection(int(i) for i in s.indices(feasible)))
        r.node, r.placed_at = row, now
        r.source = cl.source(row, r.model)
        r.ttr = time_to_ready(models[r.model].bytes, r.source, bw, p.start_s)
        cl.bind(node, f"coldstart/r{r.id:06d}", req, a.gpu_ids, a.memory_per_gpu)
        push(now + r.ttr, READY, r.id)
        return True

    while events:
        now, kind, _, rid = heapq.heappop(events)
        if now > p.duration_s:
            break
        r = replicas[rid]
        if kind == START:
            if not place(r, now):
                pending.append(rid)
            if progress:
                progress(1)
        elif kind == READY:
            m = models[r.model]
            cl.caches[r.node].loaded(m.name, m.bytes, r.source)
            cl.serving[r.node][r.model] = cl.serving[r.node].get(r.model, 0) + 1
            cl.dirty[r.node] = True
            push(now + r.lifetime, STOP, rid)
        else:
            cl.release(r.node, f"coldstart/r{r.id:06d}")
            cl.serving[r.node][r.model] -= 1
            if cl.serving[r.node][r.model] == 0:
                cl.dirty[r.node] = True
            # Oldest first. Feasibility depends only on the shape asked for, and placements in
            # this pass only take room, so once a shape fails the rest of that shape are skipped.
            failed: set[tuple[int, int]] = set()
            still = []
            for q in pending:
                req = reqs[replicas[q].model]
                shape = (req.whole_gpus, req.gpu_memory)
                if shape in failed or not place(replicas[q], now):
                    failed.add(shape)
                    still.append(q)
            pending = still
    if progress:
        progress(sum(1 for _, k, _, _ in events if k == START))  # starts after the end: not simulated
    return Result(policy.name, policy.description, replicas, p.warmup_s, len(pending), cl.rebuilds,
                  time.perf_counter() - t0)
