"""How much gpusched prefers each feasible node: a weighted sum of pure strategies.

Each strategy maps the candidate rows to a raw value in [0, 1] (vectorised over all
candidates); `prioritize` combines them with `Weights` and normalises to the
extender's 0..10 integer scale (MaxExtenderPriority), as kube-scheduler's score
plugins keep scoring and normalisation apart.

- packing: MostAllocated on GPU memory. For a share, how tightly the best-fit GPU is
  filled (1 = the pod fills the GPU's free memory exactly) averaged with how full the
  node is after the placement; for whole GPUs, the node's share of GPUs in use after.
  `spread` inverts it (LeastAllocated).
- balance: LeastAllocated on GPU memory (1 - packing), off by default (Weights): the
  fragmentation measure counts the node's CPU, for which spreading was a proxy.
- fragmentation, after FGD (Weng et al., USENIX ATC'23): a node's fragmentation for a
  workload shape is the free GPU memory that shape cannot use there (all of it where
  the node's free CPU or memory cannot host one pod of the shape, or its GPU product is
  not one the shape's pods are pinned to, as FGD's classes carry CPU and GPU model); the expected
  fragmentation weighs shapes by how often they are asked for. Placing the pod
  changes it; the score prefers the node where it grows least ("fragmentation
  gradient"), relative to the memory the pod takes. Beyond FGD, a whole-GPU shape also
  finds fragmented the untouched GPUs the node's free CPU and memory cannot feed (8 free
  GPUs with the CPU of 3 such pods strand 5). So a pod whose CPU leaves a node's remaining
  GPUs without the CPU a learned shape needs is penalised by that shape's weight times the
  GPU memory it strands, and a pod that takes a GPU the node's CPU could not feed anyway
  is preferred there.
- locality: the load time a cached copy saves, like ImageLocality weighs image bytes:
  bytes / remote bandwidth - bytes / tier bandwidth, as a fraction of the full remote
  load (1 = weights already in GPU memory).
- levels: the weighted sum normalised to 0..10, best = 10; within the best level a node
  already in use goes before an untouched node a learned multi-GPU shape could take
  whole (`levels`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from scheduler import contract
from scheduler.core.assign import best_fit_gpu
from scheduler.core.request import PodRequest
from scheduler.core.row_memo import DENSE, RowMemo
from scheduler.core.snapshot import CPU_UNKNOWN, RAM_UNKNOWN, ClusterSnapshot, whole_figure
from scheduler.quantity import MAX_BYTES

MAX_EXTENDER_PRIORITY = 10  # k8s.io/kube-scheduler/extender/v1 MaxExtenderPriority
GB = 10**9


@dataclass(frozen=True)
class Shape:
    """A kind of pod the cluster is asked to run: whole GPUs, or a share of one GPU given
    as a fraction of that GPU's memory (so one table fits mixed GPU sizes), with the CPU
    and memory it asks of the node (millicores, bytes; 0: any node's will do)."""
    whole: int = 0
    fraction: float = 0.0
    weight: float = 1.0
    cpu_milli: int = 0
    products: frozenset[str] = frozenset()  # GPU products it accepts (globs); empty = any
    ram: int = 0  # the node memory (bytes) it asks; 0: any node's memory will do

    def as_dict(self) -> dict[str, Any]:
        """For JSON (/debug/shapes): the products as a sorted list."""
        return {"whole": self.whole, "fraction": self.fraction, "weight": self.weight, "cpu_milli": self.cpu_milli,
                "ram": self.ram, "products": sorted(self.products)}


# What LLM inference fleets typically ask for when the pending queue says nothing:
# quarter and half GPUs for small models, 1/2/4/8 whole GPUs for larger ones.
DEFAULT_SHAPES: tuple[Shape, ...] = (
    Shape(fraction=0.25, weight=0.15), Shape(fraction=0.5, weight=0.2), Shape(whole=1, weight=0.3),
    Shape(whole=2, weight=0.15), Shape(whole=4, weight=0.1), Shape(whole=8, weight=0.1),
)

# FGD weighs fragmentation by the cluster's target workload. The extender estimates it from
# the GPU pods the cluster already runs and those waiting for it, once there are enough of
# them to say something; the commonest shapes only, since scoring costs one pass over the
# candidates per shape.
LEARN_MIN_PODS = 20
# Each distinct pin is matched against every product at each re-learning (resolve_pin). A
# running pod's pin costs what its GPUs are worth to its tenant; a pending pod's costs
# nothing but the pod object, so at most this many distinct pins of pending pods are read
# per re-learning (the commonest pins of a cluster are a handful); the others' pods are left out.
MAX_PENDING_PINS = 32
MAX_LEARNED_SHAPES = 8
# Each learned whole-GPU shape is split by the CPU its pods ask into up to this many
# levels: pods sorted by CPU (then memory), cut into groups of equal count, each group
# asking the most any of its pods asks of each (a node that hosts that hosts the whole
# group). How many of a shape's pods a node's free CPU and memory feed decides how many of
# its untouched GPUs they can use (fragmentation_delta): a third of 8-GPU pods asking 120
# cores of nodes that have 96 or 128 is what one level would hide; their 625-720 GiB of
# memory, on nodes of 512 GiB to 1 TiB, is what FGD's classes see and CPU alone did not; and
# 1-GPU pods asking 2 to 24 cores of a 96-core, 8-GPU node decide whether its last GPUs are
# fed (docs/benchmarks.md, placement). A group mixing pods of much CPU and little memory
# with the reverse gets a level no pod asks: conservative (it overstates what a node must
# have). A share asks a few cores of a GPU others share: its shape carries the least CPU
# and the least memory any of its pods asked (a node below either can host none of them).
MAX_HOST_LEVELS = 3


def host_levels(asks: Sequence[tuple[int, int]], levels: int = MAX_HOST_LEVELS) -> list[tuple[int, int, int]]:
    """(CPU level, memory level, pods) for pods asking `asks` (millicores, bytes): sorted
    by CPU then memory, cut into up to `levels` groups of (nearly) equal count, each at the
    most any of its pods asks of each; groups at one level merged."""
    ordered = np.array(sorted(asks), np.int64).reshape(-1, 2)
    out: dict[tuple[int, int], int] = {}
    for group in np.array_split(ordered, min(levels, len(ordered)) or 1):
        if len(group):
            top = (int(group[:, 0].max()), int(group[:, 1].max()))
            out[top] = out.get(top, 0) + len(group)
    return [(cpu, ram, pods) for (cpu, ram), pods in sorted(out.items())]


def resolve_pin(s: ClusterSnapshot, patterns: frozenset[str]) -> frozenset[str]:
    """The cluster's GPU products a pod's pin (names or globs) accepts, so that pins naming
    the same products are one shape; empty (no pin) where it accepts every product the
    cluster has, or none of them (a pod that runs anyway tells nothing of where else it
    could)."""
    pin = _accepted_pin(s, patterns)
    return frozenset() if pin is None else pin


def _accepted_pin(s: ClusterSnapshot, patterns: frozenset[str]) -> frozenset[str] | None:
    """resolve_pin, but None where the pin accepts no product the cluster has: a pod that
    waits tells that no node here can run it."""
    if not patterns:
        return frozenset()
    got = frozenset(s.products[c] for c in s.product_codes(patterns))
    if not got:
        return None
    return frozenset() if got == frozenset(p for p in s.products if p) else got


def workload_shapes(s: ClusterSnapshot, *, min_pods: int = LEARN_MIN_PODS, limit: int = MAX_LEARNED_SHAPES,
                    fallback: Sequence[Shape] = DEFAULT_SHAPES, pending: Iterable[PodRequest] = ()
                    ) -> tuple[Shape, ...]:
    """The shapes of the GPU pods the snapshot counts and of the whole-GPU pods still
    `pending`, weighted by how many ask for each (whole GPUs by count; shares by fraction
    of their GPU's memory, to 3 decimals; pods pinned to GPU products apart from the
    others, by the products they accept, resolve_pin): the commonest multi-GPU shapes (up
    to half of `limit`), then the commonest others up to `limit`, whole-GPU ones split by
    CPU and memory (host_levels), shares at the least CPU and memory their pods asked,
    reweighted to sum to 1. Fewer than `min_pods` such pods: `fallback`.

    The workload is what is asked for, not what found room: learnt from placed pods
    alone, a shape that fails (8 GPUs where no node has 8 free) weighs less the more of
    its pods fail, and the nodes it needs are guarded less. Left out of `pending`: a share
    (its fraction is of the GPU it lands on, which it has not); a pod no node here could
    ever run (more GPUs, CPU or memory than any node has, or pinned to products the
    cluster lacks: an H200 pod waiting for a node pool would otherwise be learnt as
    unpinned and keep H100 nodes whole for pods that cannot use them); pods of pins beyond
    MAX_PENDING_PINS."""
    # each shape's pods' (CPU, memory): its count is their number
    cpus: dict[tuple[int, float, frozenset[str]], list[tuple[int, int]]] = {}
    pins: dict[frozenset[str], frozenset[str]] = {frozenset(): frozenset()}
    most_gpus = int(s.gpu_count.max()) if len(s) else 0

    def most(allocatable: np.ndarray, unknown: int) -> int:
        """The most any node offers; a node whose figure is not known limits nothing."""
        return int(np.where(allocatable > 0, allocatable, unknown).max()) if len(allocatable) else 0

    most_cpu, most_ram = most(s.cpu_allocatable, CPU_UNKNOWN), most(s.ram_allocatable, RAM_UNKNOWN)
    waiting: dict[frozenset[str], frozenset[str] | None] = {frozenset(): frozenset()}  # None: no product here
    for req in pending:
        if not 0 < req.whole_gpus <= most_gpus or req.cpu_milli > most_cpu or req.ram > most_ram:
            continue
        if req.products in waiting:
            pin = waiting[req.products]
        elif len(waiting) > MAX_PENDING_PINS:
            continue
        else:
            pin = waiting[req.products] = _accepted_pin(s, req.products)
        if pin is not None:
            cpus.setdefault((req.whole_gpus, 0.0, pin), []).append(
                (whole_figure(req.cpu_milli, MAX_BYTES), whole_figure(req.ram, MAX_BYTES)))
    for row, allocs in enumerate(s.allocations):
        for a in allocs:
            pin = pins.get(a.products)
            if pin is None:
                pin = pins[a.products] = resolve_pin(s, a.products)
            if a.whole:
                key = (len(a.gpu_ids) or a.count, 0.0, pin)
            elif a.memory_per_gpu and a.gpu_ids:
                total = int(s.gpu_mem_total[row, a.gpu_ids[0]])
                if total <= 0:
                    continue
                key = (0, round(a.memory_per_gpu / total, 3), pin)
            else:
                continue
            # an ask as a level: a positive whole number, else 0
            cpus.setdefault(key, []).append((whole_figure(a.cpu_milli, MAX_BYTES), whole_figure(a.ram, MAX_BYTES)))
    counts = {key: len(c) for key, c in cpus.items()}
    if sum(counts.values()) < min_pods:
        return tuple(fallback)

    def order(key: tuple[int, float, frozenset[str]]) -> tuple[tuple[int, float], list[str]]:
        return (key[0], key[1]), sorted(key[2])  # frozensets do not order: their sorted names do

    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], order(kv[0])))
    # Multi-GPU shapes are rare by count (under 1% of the Alibaba trace's GPU pods ask 8)
    # but each needs that many untouched GPUs on one node: crowded out by share sizes,
    # nothing would keep a node whole for them (FGD weighs every class). Up to half the
    # slots go to them first, at their own weight.
    multi = [kv for kv in ranked if kv[0][0] > 1][:limit // 2]
    top = multi + [kv for kv in ranked if kv[0][0] <= 1][:limit - len(multi)]
    kept = sum(c for _, c in top)

    def levels(key: tuple[int, float, frozenset[str]]) -> list[tuple[int, int, int]]:
        asks = cpus[key]
        if key[0]:
            return host_levels(asks)
        return [(min(c for c, _ in asks), min(r for _, r in asks), len(asks))]

    return tuple(Shape(whole=w, weight=pods / kept, cpu_milli=cpu, products=pin, ram=ram) if w
                 else Shape(fraction=f, weight=pods / kept, cpu_milli=cpu, products=pin, ram=ram)
                 for (w, f, pin), _ in sorted(top, key=lambda kv: order(kv[0]))
                 for cpu, ram, pods in levels((w, f, pin)))


# Bytes per second a model's weights load from each tier into GPU memory. Defaults are
# conservative for H100 nodes: host memory over PCIe Gen5 x16 (~20 GB/s effective),
# local NVMe (~2 GB/s), and a remote object store or hub (~0.5 GB/s per node).
DEFAULT_BANDWIDTH: Mapping[str, float] = {"host-memory": 20 * GB, "disk": 2 * GB, "remote": 0.5 * GB}


@dataclass(frozen=True)
class Weights:
    """Strategy weights and parameters.

    Packing is off by default: the fragmentation gradient already fills holes and
    consolidates whole-GPU pods, and on the Alibaba trace any packing weight made it
    worse (GPU allocation at the first unplaceable pod 89.1% with packing 0.25, 0.5 or 1,
    93.0% with 0; `gpusched bench placement`). Set it, with `policy: spread`, to spread.

    Balance (LeastAllocated on GPU memory) is off by default. It was 0.2 while the
    extender saw no CPU: GPU pods piled onto the same nodes used up their CPU and stranded
    the GPUs there, and spreading was the proxy. The fragmentation measure now counts a
    node's free CPU itself, and spreading broke every untouched node a whole-node pod
    needs (FGD's Monte Carlo evaluation, default pod list, seed 2: first failure 43.3%
    with 0.2 against best-fit's 71.8%). docs/benchmarks.md (placement) has every seed.
    Locality outweighs fragmentation, so a node that caches the model and has room wins
    (DESIGN: at least 90% of new replicas land where their model is cached)."""
    packing: float = 0.0
    fragmentation: float = 1.0
    locality: float = 3.0
    balance: float = 0.0
    policy: str = "packing"  # or "spread"
    bandwidth_host_memory: float = DEFAULT_BANDWIDTH["host-memory"]
    bandwidth_disk: float = DEFAULT_BANDWIDTH["disk"]
    bandwidth_remote: float = DEFAULT_BANDWIDTH["remote"]

    def __post_init__(self) -> None:
        for name in ("packing", "fragmentation", "locality", "balance"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0 or v != v:
                raise ValueError(f"weight {name} must be a number >= 0, got {v!r}")
        if self.packing + self.fragmentation + self.locality + self.balance <= 0:
            raise ValueError("at least one weight must be positive")
        if self.policy not in ("packing", "spread"):
            raise ValueError(f"policy must be 'packing' or 'spread', got {self.policy!r}")
        for name in ("bandwidth_host_memory", "bandwidth_disk", "bandwidth_remote"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number of bytes per second")

    def tier_seconds_per_byte(self) -> np.ndarray:
        """Load seconds per byte by tier code (contract.CACHE_TIERS order: gpu, host-memory, disk)."""
        per = {"gpu": 0.0, "host-memory": 1 / self.bandwidth_host_memory, "disk": 1 / self.bandwidth_disk}
        return np.array([per[t] for t in contract.CACHE_TIERS])


class Placement(NamedTuple):
    """Where the pod would go on each candidate row, as assign_gpus would choose."""
    gpu: np.ndarray  # [C] best-fit GPU of a share, -1 where none (whole-GPU pods: -1)
    taken: np.ndarray  # [C] bytes the pod takes from the row's free memory
    free_before: np.ndarray  # [C] free bytes on that GPU before (shares)
    gpu_total: np.ndarray  # [C] that GPU's total (shares)


def simulate(s: ClusterSnapshot, req: PodRequest, rows: np.ndarray) -> Placement:
    n = len(rows)
    if req.whole_gpus:
        # whole GPUs are untouched ones, so they take their total: k x that GPU size
        taken = req.whole_gpus * s.gpu_mem_total[rows].max(axis=1)
        return Placement(np.full(n, -1), taken, np.zeros(n, np.int64), np.zeros(n, np.int64))
    free = s.free[rows]
    g = best_fit_gpu(free, req.gpu_memory)
    gi = np.maximum(g, 0)
    before = free[np.arange(n), gi]
    total = s.gpu_mem_total[rows, gi]  # one GPU per row, not a gather of every GPU's
    taken = np.where(g >= 0, req.gpu_memory, 0)
    return Placement(g, taken, before, total)


def packing(s: ClusterSnapshot, req: PodRequest, rows: np.ndarray, p: Placement) -> np.ndarray:
    usable_total = np.maximum(s.usable_total[rows], 1)
    node_full_after = 1 - (s.free_total[rows] - p.taken) / usable_total
    if req.whole_gpus:
        return np.clip(node_full_after, 0, 1)
    gpu_fill = np.where(p.gpu >= 0, 1 - (p.free_before - p.taken) / np.maximum(p.gpu_total, 1), 0)
    return np.clip((gpu_fill + node_full_after) / 2, 0, 1)


def _share_fragment(free: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Free bytes of one GPU that a share of `share` bytes (a fraction of its total) cannot use."""
    return np.where(free < share, free, 0)


def fragmentation_delta(s: ClusterSnapshot, req: PodRequest, rows: np.ndarray, p: Placement,
                        shapes: Sequence[Shape]) -> np.ndarray:
    """[C] growth of the expected fragmentation (FGD's F_n(M)) if the pod lands on each row.

    For a share shape a GPU's free memory is a fragment when the share does not fit in it;
    for a whole-GPU shape every partly used GPU's free memory is, and all of the node's
    free memory is when fewer untouched GPUs remain than the shape needs. Where the node's
    free CPU or memory is below the shape's, all of its free memory is a fragment for that
    shape (FGD: the shape cannot run there); where they feed fewer of a whole-GPU shape's
    pods than its untouched GPUs would take, the GPUs left unfed are (_whole_fragment). A
    placement changes one GPU (a share) or k untouched GPUs (whole) and the node's free
    CPU and memory, so only those are recomputed. A node
    whose product a pinned shape does not accept has all of its free memory fragmented for
    that shape, before and after, so an unpinned pod placed there lowers that shape's
    fragmentation by what it takes: pods free to go anywhere keep off the GPUs pinned pods
    need, as FGD steers them."""
    total_w = sum(sh.weight for sh in shapes) or 1.0
    whole_count = s.whole_free_count[rows].astype(np.int64)
    free_total = s.free_total[rows]
    partial = s.partial_free[rows]  # free memory on partly used GPUs
    # an untouched GPU's bytes (their mean, where a node mixes sizes): no [C,G] gather
    size = (free_total - partial) / np.maximum(whole_count, 1)
    cpu = s.cpu_free[rows]
    cpu_after = np.maximum(cpu - req.cpu_milli, 0)  # as the snapshot counts a node over its CPU
    ram = s.ram_free[rows]
    ram_after = np.maximum(ram - req.ram, 0)
    free_total_after = free_total - p.taken
    delta = np.zeros(len(rows))
    # how many pods of each shape the node's free CPU and memory host, before and after, and
    # whether its GPU product (which a placement does not change) is one the shape accepts:
    # shapes share levels and pins
    hosts: dict[tuple[int, int, frozenset[str]], tuple[np.ndarray | None, np.ndarray | None]] = {}
    accepts: dict[frozenset[str], np.ndarray] = {}
    for sh in shapes:
        if not (sh.cpu_milli or sh.ram or sh.products):
            hosts[(0, 0, frozenset())] = None, None  # every node hosts as many as its GPUs take
        elif (sh.cpu_milli, sh.ram, sh.products) not in hosts:
            fed = (np.minimum(_hosted(cpu, sh.cpu_milli), _hosted(ram, sh.ram)),
                   np.minimum(_hosted(cpu_after, sh.cpu_milli), _hosted(ram_after, sh.ram)))
            if sh.products:
                if sh.products not in accepts:
                    accepts[sh.products] = s.accepts_products(sh.products, rows)
                product = accepts[sh.products]
                fed = np.where(product, fed[0], 0), np.where(product, fed[1], 0)
            hosts[(sh.cpu_milli, sh.ram, sh.products)] = fed
    if req.whole_gpus:
        count_after = whole_count - req.whole_gpus
        for sh in shapes:
            hosted, hosted_after = hosts[(sh.cpu_milli, sh.ram, sh.products)]
            if sh.whole:
                before = _whole_fragment(whole_count, partial, free_total, hosted, sh.whole, size)
                after = _whole_fragment(count_after, partial, free_total_after, hosted_after, sh.whole, size)
            else:
                host_ok, host_ok_after = _hosts_one(hosted, len(rows)), _hosts_one(hosted_after, len(rows))
                # The GPUs taken were untouched, no fragment of a share: the node's fragments
                # for it are the same after, so they cancel (computed only where CPU is lost).
                frag = _share_fragments(s, rows, sh.fraction, host_ok & ~host_ok_after)
                before = np.where(host_ok, frag, free_total)
                after = np.where(host_ok_after, frag, free_total_after)
            delta += sh.weight / total_w * (after - before)
        return delta
    ok = p.gpu >= 0
    was_whole = s.whole_free[rows, np.maximum(p.gpu, 0)] & ok
    after_free = p.free_before - p.taken
    # the same for every whole-GPU shape: computed once, not once per shape
    partial_after = partial + np.where(was_whole, after_free, -p.taken)
    count_after = whole_count - was_whole
    for sh in shapes:
        hosted, hosted_after = hosts[(sh.cpu_milli, sh.ram, sh.products)]
        if sh.whole:
            before = _whole_fragment(whole_count, partial, free_total, hosted, sh.whole, size)
            after = _whole_fragment(count_after, partial_after, free_total_after, hosted_after, sh.whole, size)
        else:
            host_ok, host_ok_after = _hosts_one(hosted, len(rows)), _hosts_one(hosted_after, len(rows))
            share = sh.fraction * p.gpu_total
            gpu_before = _share_fragment(p.free_before, share)
            gpu_after = _share_fragment(after_free, share)
            # CPU hosts the shape before and after: only the pod's GPU changed. The pod's
            # CPU makes it unfit: the node's fragments for it (every GPU) become all its free.
            lost = host_ok & ~host_ok_after
            before = np.where(host_ok, np.where(lost, _share_fragments(s, rows, sh.fraction, lost), gpu_before),
                              free_total)
            after = np.where(host_ok_after, gpu_after, free_total_after)
        delta += sh.weight / total_w * np.where(ok, after - before, 0)
    return delta


# more pods than any node has GPUs for: a shape that asks none of a resource
_UNLIMITED = float(1 << 20)


def _hosted(free: np.ndarray, ask: int) -> np.ndarray:
    """[C] how many pods asking `ask` of a resource the node's free amount of it feeds,
    unrounded: the fraction of one pod counts, so each millicore a pod takes moves it."""
    return free / ask if ask > 0 else np.full(len(free), _UNLIMITED)


def _hosts_one(hosted: np.ndarray | None, n: int) -> np.ndarray:
    """[C] whether the node hosts at least one pod of the shape."""
    return np.ones(n, bool) if hosted is None else hosted >= 1


def _whole_fragment(count: np.ndarray, partial: np.ndarray, free_total: np.ndarray, hosted: np.ndarray | None,
                    k: int, size: np.ndarray) -> np.ndarray:
    """[C] fragmented memory of a node for a k-GPU shape, of `count` untouched GPUs of `size`
    bytes each, whose CPU and memory feed `hosted` such pods (None: any number). FGD: all
    its free memory where it hosts no such pod, else the free memory of its partly used
    GPUs. Beyond FGD, the GPUs of the pods its untouched GPUs would take but its CPU and
    memory cannot feed: a node with 8 free GPUs and the CPU of 3 such 1-GPU pods strands 5
    for the shape, which FGD's rule (hosts one pod or not) misses, and that is how whole-GPU
    pods fail with GPUs free (docs/benchmarks.md, placement). The count % k untouched GPUs
    no such pod can use stay uncounted, as in FGD."""
    fits = count // k
    if hosted is None:
        return np.where(fits >= 1, partial, free_total)
    pods = np.minimum(fits, np.floor(hosted))
    # the pods its GPUs would take but its CPU and memory cannot feed, k GPUs each: 0 where
    # hosted reaches fits, so the count % k GPUs no such pod can use stay FGD's (uncounted)
    return np.where(pods >= 1, partial + np.where(pods >= fits, 0, (fits - hosted) * k) * size, free_total)


def _share_fragments(s: ClusterSnapshot, rows: np.ndarray, fraction: float, where: np.ndarray) -> np.ndarray:
    """[C] free bytes of all the node's GPUs that a share of `fraction` cannot use, on the
    rows of `where` (0 elsewhere): a gather of every GPU, so only where CPU moves the answer."""
    out = np.zeros(len(rows), np.int64)
    if where.any():
        r = rows[where]
        free = s.free[r]
        out[where] = _share_fragment(free, fraction * s.gpu_mem_total[r]).sum(axis=1)
    return out


def fragmentation(s: ClusterSnapshot, req: PodRequest, rows: np.ndarray, p: Placement,
                  shapes: Sequence[Shape]) -> np.ndarray:
    grow = fragmentation_delta(s, req, rows, p, shapes)
    taken = np.maximum(p.taken, 1)
    # growth per byte placed: +1 strands as much as it takes (score 0), 0 neutral (0.5),
    # -1 removes as many fragment bytes as it takes (score 1)
    return np.clip(0.5 - grow / taken / 2, 0, 1)


def locality(s: ClusterSnapshot, req: PodRequest, rows: np.ndarray, w: Weights) -> tuple[np.ndarray, np.ndarray]:
    """([C] fraction of the remote load time avoided, [C] seconds avoided)."""
    frac = np.zeros(len(rows))
    seconds = np.zeros(len(rows))
    cache = s.model_cache.get(req.model or "")
    if cache is None or len(rows) == 0:
        return frac, seconds
    where = np.full(len(s), -1, np.int64)
    where[cache.node_idx] = np.arange(len(cache.node_idx))
    hit = where[rows]
    has = hit >= 0
    idx = hit[has]
    nbytes = cache.bytes[idx].astype(np.float64)
    remote = nbytes / w.bandwidth_remote
    local = nbytes * w.tier_seconds_per_byte()[cache.tier[idx]]
    # a tier configured slower than the remote load saves nothing (and must not score below 0)
    saved = np.maximum(remote - local, 0)
    seconds[has] = saved
    frac[has] = np.where(remote > 0, saved / remote, 0)
    return frac, seconds


@dataclass(frozen=True)
class ScoreDetails:
    """Per-candidate components, for the placement annotation; looked up per node on demand
    by the node's row (no per-candidate names are kept: 5,000 strings per pod)."""
    rows: np.ndarray  # [C] each candidate's snapshot row, -1 if unknown
    index: Mapping[str, int]  # the snapshot's rows by name
    packing: np.ndarray
    fragmentation: np.ndarray
    locality: np.ndarray
    load_seconds_avoided: np.ndarray
    score: np.ndarray  # [C] 0..MAX_EXTENDER_PRIORITY
    total: np.ndarray  # [C] the unrounded weighted sum `score` normalises
    untouched: np.ndarray  # [C] what `levels` kept whole among equals: merged calls level with it again

    def _position(self, node: str) -> int | None:
        row = self.index.get(node, -2)
        # one C-level scan, for the one node a pod is bound to
        hits = np.flatnonzero(self.rows == row) if row >= 0 else np.empty(0, np.int64)
        return int(hits[0]) if len(hits) else None

    def get(self, node: str, default: dict[str, Any] | None = None) -> dict[str, Any]:
        i = self._position(node)
        if i is None:
            return default if default is not None else {}
        return {"score": int(self.score[i]), "packing": round(float(self.packing[i]), 3),
                "fragmentation": round(float(self.fragmentation[i]), 3),
                "locality": round(float(self.locality[i]), 3),
                "loadSecondsAvoided": round(float(self.load_seconds_avoided[i]), 1)}


# Every snapshot array that simulate, packing and fragmentation read.
SCORE_INPUTS = ("free", "whole_free", "gpu_mem_total", "usable_total", "free_total", "partial_free",
                "whole_free_count", "cpu_free", "ram_free", "product_code")


def packing_and_fragmentation(s: ClusterSnapshot, req: PodRequest, rows: np.ndarray,
                              shapes: Sequence[Shape]) -> tuple[np.ndarray, np.ndarray]:
    p = simulate(s, req, rows)
    return packing(s, req, rows, p), fragmentation(s, req, rows, p, shapes)


def score_rows(s: ClusterSnapshot, req: PodRequest, rows: np.ndarray, weights: Weights | None = None,
               shapes: Sequence[Shape] = DEFAULT_SHAPES, memo: RowMemo | None = None) -> ScoreDetails:
    """Scores 0..10 of the candidate rows (-1 for a node not in the snapshot; those and
    every candidate of a non-GPU pod score 0). A `memo` (the extender keeps one) carries
    every row's packing and fragmentation from one call to the next; the scores are the
    same with it or without."""
    w = weights or Weights()
    rows = np.asarray(rows, np.int64)
    n = len(rows)
    zeros = np.zeros(n)
    known = rows >= 0
    if not req.gpu_pod or not known.any():
        return ScoreDetails(rows, s.index, zeros, zeros, zeros, zeros, np.zeros(n, np.int64), zeros,
                            np.zeros(n, bool))
    r = np.where(known, rows, 0)
    if memo is not None and n * DENSE >= len(s):
        # a pinned shape reads product codes, whose meaning is the snapshot's product table
        # (a rebuild renumbers it): the table is part of the key, as in feasibility's
        pinned = s.products if any(sh.products for sh in shapes) else ()
        key = ("score", req.whole_gpus, req.gpu_memory, req.cpu_milli, req.ram, tuple(shapes), pinned)
        pack_all, frag_all = memo.get(s, key, SCORE_INPUTS, lambda rows: packing_and_fragmentation(s, req, rows, shapes))
        pack, frag = pack_all[r], frag_all[r]
    else:
        pack, frag = packing_and_fragmentation(s, req, r, shapes)
    balance = 1 - pack
    if w.policy == "spread":
        pack = balance
    loc, secs = locality(s, req, r, w)
    total = np.where(known, w.packing * pack + w.fragmentation * frag + w.locality * loc + w.balance * balance, 0)
    whole = known & untouched(s, r, shapes)
    return ScoreDetails(rows, s.index, pack, frag, loc, secs, levels(total, whole), total, whole)


def untouched(s: ClusterSnapshot, rows: np.ndarray, shapes: Sequence[Shape]) -> np.ndarray:
    """[C] every usable GPU of the row's node (present, healthy, reported) is wholly free,
    and there are as many as a learned multi-GPU shape asks. Counted from the node's
    report, not its allocatable count, which can differ (an unhealthy GPU, time-slicing).
    GPU counts only: a node whose CPU or product no such shape could use is kept too (a
    known overstatement, docs/benchmarks.md)."""
    least = min((sh.whole for sh in shapes if sh.whole > 1), default=0)
    if not least:
        return np.zeros(len(rows), bool)
    gpus = s.usable[rows].sum(axis=1)
    return (s.whole_free_count[rows] >= gpus) & (gpus >= least)


def levels(total: np.ndarray, keep_whole: np.ndarray) -> np.ndarray:
    """The extender's scores: `normalize`, then the best level's `keep_whole` nodes (see
    `untouched`) one level down while a node already in use shares that level.

    kube-scheduler draws at random among the nodes of the best score, and the best level
    holds every node within a twentieth of the best total (rint(10 x total / best) = 10).
    Breaking an untouched node costs what the pods needing all of its GPUs lose, which
    the gradient weighs by how often such pods come (under 1% of the Alibaba trace's GPU
    pods ask 8), far below a level: left to the draw, small pods broke every untouched
    8-GPU node while nodes in use scored the same (docs/benchmarks.md, placement). So
    among equals a used node goes first, as FGD's exact minimum and best-fit would have
    it, and the draw still spreads pods over the used nodes of the best level."""
    score = normalize(total)
    best = score.max(initial=0)
    top = score == best
    if best > 0 and (top & ~keep_whole).any():
        score = np.where(top & keep_whole, score - 1, score)
    return score


def normalize(total: np.ndarray) -> np.ndarray:
    """Weighted totals to extender scores 0..MAX_EXTENDER_PRIORITY, as kube-scheduler's
    DefaultNormalizeScore does: the best candidate gets the maximum, so 11 integer levels
    resolve differences between these candidates, not between all nodes there are."""
    best = total.max() if len(total) else 0.0
    if not best > 0:
        return np.zeros(len(total), np.int64)
    # never outside the extender's range, whatever a component returns (the protocol refuses it)
    return np.clip(np.rint(total * MAX_EXTENDER_PRIORITY / best), 0, MAX_EXTENDER_PRIORITY).astype(np.int64)
