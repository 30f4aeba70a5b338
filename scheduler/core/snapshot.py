"""The cluster as the placement core sees it: immutable numpy arrays over all nodes.

Rows are nodes, columns GPU indices (G = the most GPUs any node has; absent GPUs have
`present` False and total 0), so feasibility and scoring are array expressions over
thousands of nodes, not Python loops.

Trust rules (DESIGN.md: missing data is not zero, a stale report is not trusted):
- A node WITH a gpusched report (any of gpus, model-cache, reported-at, or an
  unreadable one) is used only while `reported-at` is at most `stale_after_s` old and
  at most MAX_CLOCK_SKEW_S in the future (clock skew, its own reason), its GPU field is
  readable and the kubelet's nvidia.com/gpu vouches for its GPUs (nodeinfo.vouched_gpus).
  Otherwise it gets no new GPU pods; its allocations still count.
- A node with NO report at all but `nvidia.com/gpu` allocatable is used as the device
  plugin and GPU feature discovery describe it: that many healthy GPUs, each with the
  `nvidia.com/gpu.memory` label's memory. So the product works without the node agent.
  Without that label its GPUs' memory is unknown (0): whole GPUs can still be given,
  memory shares cannot.

Accounting: `committed` sums the memory of the pods bound or assumed on each GPU (a
whole-GPU pod commits the GPU's total); free memory is total minus the larger of what
was committed and what the agent saw in use, so neither a pod that has not loaded yet
nor a process nobody told us about is double-booked.

Snapshots are immutable: `with_allocation` and friends return a new snapshot; arrays
they do not change are shared, those they change are copied (a few hundred kB at
5,000 nodes, tens of microseconds), so readers holding the old one never see a change.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import KW_ONLY, dataclass, field, replace
from itertools import repeat
from typing import Any, Iterable, Mapping, NamedTuple, Sequence, TypedDict, cast

import numpy as np

from scheduler import contract
from scheduler.core.row_tuple import RowTuple, rows_of
from scheduler.nodeinfo import MAX_CLOCK_SKEW_S, CachedModel, NodeReport, vouched_gpus
from scheduler.quantity import MAX_BYTES, MAX_MILLICORES

MiB = 2**20
MAX_GPUS = 64
MAX_NOTES = 100  # notes kept along a chain of with_allocation updates
# nvidia-smi shows a few MiB in use on an idle GPU (driver contexts, monitoring); below
# this the GPU still counts as empty for whole-GPU placement.
IDLE_USED_BYTES = 512 * MiB
# Free CPU of a node whose allocatable CPU is not known: more than any pod may ask
# (quantity.MAX_MILLICORES), so CPU limits nothing there, as before CPU was read.
CPU_UNKNOWN = 2**40
# The same for the node's memory (RAM, bytes; quantity.MAX_BYTES is 2**50).
RAM_UNKNOWN = 2**60

# Node status codes, in the order a reason is reported.
OK, NO_GPUS, STALE, BAD_REPORT, CLOCK_SKEW = 0, 1, 2, 3, 4


class SnapshotError(ValueError):
    """Input that no snapshot can represent (e.g. two nodes with one name)."""


@dataclass(frozen=True)
class Allocation:
    pod_key: str  # namespace/name
    gpu_ids: tuple[int, ...]  # empty = unknown (e.g. bound while the extender was down)
    memory_per_gpu: int  # bytes on each GPU; for whole GPUs informative only
    whole: bool
    count: int = 1  # GPUs held, used only when gpu_ids is unknown
    inferred: bool = False  # gpu_ids were guessed by the snapshot, not read from the pod
    # The pod's CPU request (millicores, core/resources.py): the workload's learned shapes carry
    # it. What the node's CPU holds is NodeState.cpu_requested, every pod's, not this.
    cpu_milli: int = 0
    # Its memory request (RAM, bytes; core/resources.py), learned with the CPU.
    ram: int = 0
    # The GPU products the pod accepts (PodRequest.products; empty = any): learned shapes
    # carry it, so pods free to go anywhere keep off the GPUs pinned pods can use.
    products: frozenset[str] = frozenset()


@dataclass
class NodeState:
    name: str
    gpu_count: int = 0  # allocatable nvidia.com/gpu
    product: str = ""  # label nvidia.com/gpu.product
    gpu_memory_label_mib: int | None = None  # label nvidia.com/gpu.memory; 0 or None = unknown
    report: NodeReport | None = None
    allocations: list[Allocation] = field(default_factory=list)
    # The kubelet's own count of the node's GPUs (status.capacity / status.allocatable
    # nvidia.com/gpu, whatever the node's schedulability): the agent's report is believed
    # only as far as these vouch for it (nodeinfo.vouched_gpus). None: not known (a
    # simulation, a test row), the report is taken as it is.
    kubelet_gpus: tuple[int, int] | None = None
    # CPU as kube-scheduler's NodeResourcesFit counts it (millicores): allocatable (0 = not
    # known: CPU then limits nothing here) and the requests of every pod bound to the node,
    # gpusched's or not.
    cpu_allocatable: int = 0
    cpu_requested: int = 0
    # The node's memory (RAM, bytes), counted the same way: a GPU pod asking more than a
    # node has left cannot use its GPUs (FGD's classes carry it).
    ram_allocatable: int = 0
    ram_requested: int = 0

    def holding(self, allocations: list[Allocation], requested: tuple[int, int]) -> "NodeState":
        """This node's own facts with what its pods hold: their GPU allocations and the CPU
        (millicores) and memory (bytes) they request."""
        return replace(self, allocations=allocations, cpu_requested=requested[0], ram_requested=requested[1])


class ModelCache(NamedTuple):
    node_idx: np.ndarray  # int64 node rows holding the model
    bytes: np.ndarray  # int64 bytes cached there
    tier: np.ndarray  # int8 index into contract.CACHE_TIERS


class _Row(NamedTuple):
    """One node's facts before they are stacked into the snapshot's arrays."""
    total: np.ndarray
    used: np.ndarray
    present: np.ndarray
    healthy: np.ndarray
    reported_at: float
    has_report: bool
    error: str | None
    product: str
    models: tuple[CachedModel, ...]
    gpu_count: int
    notes: tuple[str, ...]
    cpu_allocatable: int
    cpu_requested: int
    ram_allocatable: int
    ram_requested: int


def whole_figure(value: object, most: int) -> int:
    """A NodeState's CPU or memory figure as a column value: a whole number in 0..most
    (anything else, a bool, a float, None, is 0: not known, or nothing requested)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), most)


def _cpu_milli(value: object) -> int:
    return whole_figure(value, MAX_MILLICORES)


def _ram(value: object) -> int:
    return whole_figure(value, MAX_BYTES)


def _node_row(state: NodeState) -> _Row:
    rep = state.report
    has_report = rep is not None and bool(rep.gpus or rep.models or rep.reported_at or rep.errors)
    notes: list[str] = []
    count = state.gpu_count if isinstance(state.gpu_count, int) and not isinstance(state.gpu_count, bool) else 0
    if not 0 <= count <= MAX_GPUS:
        notes.append(f"node {state.name}: allocatable {contract.GPU_RESOURCE} {count} outside 0..{MAX_GPUS}")
        count = min(max(count, 0), MAX_GPUS)
    host = (_cpu_milli(state.cpu_allocatable), _cpu_milli(state.cpu_requested), _ram(state.ram_allocatable),
            _ram(state.ram_requested))
    if has_report:
        assert rep is not None
        gpus, clamped = rep.gpus, None
        if state.kubelet_gpus is not None:
            gpus, clamped = vouched_gpus(rep.gpus, *state.kubelet_gpus)
        width = max((g.index for g in gpus), default=-1) + 1
        total = np.zeros(width, np.int64)
        used = np.zeros(width, np.int64)
        present = np.zeros(width, bool)
        healthy = np.zeros(width, bool)
        for g in gpus:
            total[g.index] = g.memory_total
            used[g.index] = g.memory_used if g.memory_used > IDLE_USED_BYTES else 0
            present[g.index] = True
            healthy[g.index] = g.healthy
        at = rep.reported_at.timestamp() if rep.reported_at is not None else math.nan
        # An unreadable model cache only costs locality; unreadable GPUs or time cost trust.
        errors = [e for e in rep.errors if not e.startswith(contract.MODEL_CACHE)] + ([clamped] if clamped else [])
        notes += [f"node {state.name}: {e}" for e in rep.errors if e.startswith(contract.MODEL_CACHE)]
        product = state.product or next((g.product for g in gpus if g.product), "")
        return _Row(total, used, present, healthy, at, True, "; ".join(errors) or None, product,
                    rep.models, count, tuple(notes), *host)
    mib = state.gpu_memory_label_mib or 0
    mib = mib if isinstance(mib, int) and 0 < mib <= 2**24 else 0
    return _Row(np.full(count, mib * MiB, np.int64), np.zeros(count, np.int64), np.ones(count, bool),
                np.ones(count, bool), math.nan, False, None, state.product, (), count, tuple(notes), *host)


def _commit(alloc: Allocation, total: np.ndarray, committed: np.ndarray, exclusive: np.ndarray) -> None:
    ids = list(alloc.gpu_ids)
    if alloc.whole:
        committed[ids] += total[ids]
        exclusive[ids] = True
    else:
        committed[ids] += alloc.memory_per_gpu


def _infer_ids(alloc: Allocation, total: np.ndarray, present: np.ndarray, healthy: np.ndarray,
               committed: np.ndarray, exclusive: np.ndarray) -> tuple[int, ...]:
    """Where a pod of unknown GPUs most likely sits: the extender's own choice (best fit,
    lowest index) on what is left, falling back to over-committing rather than not
    counting a pod that is certainly running somewhere on the node."""
    live = present & healthy
    if not live.any():
        live = present
    open_ = live & ~exclusive
    order = np.arange(len(total))
    if alloc.whole:
        n = len(alloc.gpu_ids) or max(alloc.count, 1)
        empty = open_ & (committed == 0)
        ranked = ([int(i) for i in order[empty]]
                  + [int(i) for i in sorted(order[open_ & ~empty], key=lambda i: (committed[i], i))]
                  + [int(i) for i in order[present & ~open_]])
        return tuple(sorted(ranked[:n]))
    free = np.where(open_, total - committed, -1)
    fits = open_ & (free >= alloc.memory_per_gpu)
    if fits.any():
        return (int(np.argmin(np.where(fits, free, np.iinfo(np.int64).max))),)
    if open_.any():
        return (int(np.argmax(free)),)
    return (int(order[present][0]),) if present.any() else ()


def _account(name: str, total: np.ndarray, present: np.ndarray, healthy: np.ndarray,
             allocs: Iterable[Allocation]) -> tuple[np.ndarray, np.ndarray, tuple[Allocation, ...], tuple[str, ...]]:
    """Committed memory and exclusive flags of one node's GPUs from its allocations.
    Allocations with known, present GPU ids are counted first so guesses fill around them."""
    width = len(total)
    present_at = present.tolist()
    known: list[Allocation] = []
    unknown: list[Allocation] = []
    for a in allocs:
        ok = (a.gpu_ids and len(set(a.gpu_ids)) == len(a.gpu_ids)
              and all(0 <= g < width and present_at[g] for g in a.gpu_ids))
        (known if ok else unknown).append(a)
    # The known ones in Python ints: a watch event re-accounts one node's handful of pods,
    # where a numpy call per pod cost most of the event (it runs with the GIL held).
    total_at = total.tolist()
    held = [0] * width
    whole = [False] * width
    for a in known:
        for g in a.gpu_ids:
            held[g] += total_at[g] if a.whole else a.memory_per_gpu
            whole[g] = whole[g] or a.whole
    committed = np.array(held, np.int64)
    exclusive = np.array(whole, bool)
    notes: list[str] = []
    for a in sorted(unknown, key=lambda a: a.pod_key):
        ids = _infer_ids(a, total, present, healthy, committed, exclusive)
        if not ids:
            notes.append(f"node {name}: pod {a.pod_key} holds GPUs but the node has none; not counted")
        a = replace(a, gpu_ids=ids, inferred=True)
        _commit(a, total, committed, exclusive)
        known.append(a)
    return committed, exclusive, tuple(known), tuple(notes)


class _Trust(TypedDict):
    """What the snapshot derives from reports, hardware and the clock, not from allocations:
    recomputed when `now` moves, shared by the copies a bind makes."""
    status: np.ndarray  # [N] int8 OK/NO_GPUS/STALE/BAD_REPORT/CLOCK_SKEW
    stale: np.ndarray  # [N] bool
    usable: np.ndarray  # [N,G] present, healthy, node trusted
    usable_total: np.ndarray  # [N] sum of usable GPUs' memory
    unhealthy_count: np.ndarray  # [N]
    memory_known: np.ndarray  # [N] some GPU has a known total


class _Free(TypedDict):
    """What the snapshot derives from allocations too: patched row by row on each bind."""
    free: np.ndarray  # [N,G] int64 bytes free for new pods
    whole_free: np.ndarray  # [N,G] can be given whole
    max_free: np.ndarray  # [N] largest free on one GPU
    free_total: np.ndarray  # [N] sum of free
    partial_free: np.ndarray  # [N] free on GPUs not whole-free
    whole_free_count: np.ndarray  # [N]


@dataclass(frozen=True, eq=False)
class ClusterSnapshot:
    names: tuple[str, ...]
    index: Mapping[str, int]  # name -> row; never mutated after build
    gpu_count: np.ndarray  # [N] allocatable nvidia.com/gpu
    gpu_mem_total: np.ndarray  # [N,G] int64 bytes
    used: np.ndarray  # [N,G] int64 bytes the agent saw in use (idle noise zeroed)
    committed: np.ndarray  # [N,G] int64 bytes held by allocations
    exclusive: np.ndarray  # [N,G] bool: given whole to a pod
    healthy: np.ndarray  # [N,G] bool
    present: np.ndarray  # [N,G] bool
    reported_at: np.ndarray  # [N] float64 epoch seconds; nan = none
    has_report: np.ndarray  # [N] bool
    report_error: Mapping[int, str]  # row -> why its report is unreadable
    product_code: np.ndarray  # [N] int32 into `products`
    products: tuple[str, ...]  # code table; "" (code 0) = unknown
    model_cache: Mapping[str, ModelCache]
    node_models: Sequence[tuple[CachedModel, ...]]  # per row (a RowTuple: an update copies a chunk)
    allocations: Sequence[tuple[Allocation, ...]]  # per row, gpu_ids resolved (a RowTuple too)
    now: float
    stale_after_s: float
    notes: tuple[str, ...] = ()
    _: KW_ONLY
    # Derived from the above (_trust, _free; see their fields), so the hot path only
    # gathers rows. Passed in rather than computed here: a bind patches one row of them.
    status: np.ndarray
    stale: np.ndarray
    usable: np.ndarray
    usable_total: np.ndarray
    unhealthy_count: np.ndarray
    memory_known: np.ndarray
    free: np.ndarray
    whole_free: np.ndarray
    max_free: np.ndarray
    free_total: np.ndarray
    partial_free: np.ndarray
    whole_free_count: np.ndarray
    # CPU (millicores; see NodeState): allocatable, 0 = not known; requested by every pod
    # bound there; free, what a new pod may still ask (CPU_UNKNOWN where not known).
    cpu_allocatable: np.ndarray
    cpu_requested: np.ndarray
    cpu_free: np.ndarray
    # The node's memory (RAM, bytes), the same way (RAM_UNKNOWN free where not known).
    ram_allocatable: np.ndarray
    ram_requested: np.ndarray
    ram_free: np.ndarray
    # ---------- lookups

    def __len__(self) -> int:
        return len(self.names)

    @property
    def gpus(self) -> int:
        """G, the width of the per-GPU arrays."""
        return self.gpu_mem_total.shape[1]

    def indices(self, names: Iterable[str]) -> np.ndarray:
        """Rows of `names` (-1 where unknown), for callers that hold names; the core's
        functions take rows. (The extender reads kube-scheduler's names as rows itself.)"""
        return np.fromiter(map(self.index.get, names, repeat(-1)), dtype=np.int64)

    def product_codes(self, patterns: Iterable[str]) -> np.ndarray:
        """Codes of the known products matching any of `patterns` (shell globs, exact otherwise)."""
        pats = list(patterns)
        return np.array([c for c, p in enumerate(self.products)
                         if p and any(fnmatch.fnmatchcase(p, q) for q in pats)], dtype=np.int32)

    def accepts_products(self, patterns: Iterable[str], rows: np.ndarray) -> np.ndarray:
        """[C] whether each row's product matches any of `patterns` (rows in the snapshot):
        a lookup table over the product codes, gathered once."""
        table = np.zeros(len(self.products), bool)
        table[self.product_codes(patterns)] = True
        return table[self.product_code[rows]]

    # ---------- copy-on-write updates

    def at(self, now: float) -> "ClusterSnapshot":
        """The same cluster judged at `now`: staleness moves with the clock, data does not."""
        now = float(now)
        trust = _trust(self.present, self.healthy, self.gpu_mem_total, self.has_report, self.reported_at,
                       self.report_error, now, self.stale_after_s)
        free = _free(self.gpu_mem_total, self.used, self.committed, self.exclusive, trust["usable"])
        return replace(self, now=now, **trust, **free)

    def with_allocation(self, node: str, alloc: Allocation) -> "ClusterSnapshot":
        """Count `alloc` on `node` at once (replacing any earlier one of the same pod there).
        Unknown or impossible gpu_ids are inferred rather than refused: this runs on watch
        events, where refusing would leave a running pod uncounted. Unknown nodes: no-op
        (the next rebuild counts the pod)."""
        return self.edited(add=((node, alloc),))

    def without_allocation(self, node: str, pod_key: str) -> "ClusterSnapshot":
        return self.edited(drop=((node, pod_key),))

    def edited(self, drop: Iterable[tuple[str, str]] = (),
               add: Iterable[tuple[str, Allocation]] = ()) -> "ClusterSnapshot":
        """Several allocation changes as one new snapshot: each (node, pod key) of `drop`
        taken off, then each (node, allocation) of `add` counted as with_allocation does.
        Unknown nodes are skipped; nothing changed: this very snapshot.

        For watch events and binds: one call however many nodes an event touches (a pod
        moved, a claim's devices), so readers see all of it or none of it. Costs the rows it
        changes plus one copy of each array whose rows came out different; the arrays it
        leaves alone are this snapshot's own, so the row memo skips them unread."""
        rows: dict[int, list[Allocation]] = {}
        for node, key in drop:
            row = self.index.get(node)
            if row is not None:
                allocs = rows[row] if row in rows else self.allocations[row]  # [] is a row emptied here
                if any(a.pod_key == key for a in allocs):
                    rows[row] = [a for a in allocs if a.pod_key != key]
        for node, alloc in add:
            row = self.index.get(node)
            if row is not None:
                allocs = rows[row] if row in rows else self.allocations[row]  # [] is a row emptied here
                rows[row] = [a for a in allocs if a.pod_key != alloc.pod_key] + [alloc]
        return self._with_rows_allocations(rows) if rows else self

    def with_nodes(self, states: Sequence[NodeState]) -> "ClusterSnapshot | None":
        """The rows of `states` (each with all its allocations) derived afresh, as a rebuild
        with these nodes would derive them (a new product takes the next code rather than
        its place in a rebuild's table). None where a rebuild is needed: a node not in this
        snapshot, the same node twice, or more GPUs than the snapshot is wide.

        For node reports: a model cache or a GPU's use changes on one node, and a rebuild
        (a Python pass over every node, ~1 s at 5,000) would hold the GIL from the verbs."""
        if not states:
            return self
        found = [self.index.get(st.name) for st in states]
        if None in found or len(set(found)) != len(found):
            return None
        rows = [int(i) for i in found if i is not None]
        built = [_node_row(st) for st in states]
        width = self.gpus
        if any(len(b.total) > width for b in built):
            return None
        r = np.array(rows, np.int64)
        k = len(rows)
        total, used = np.zeros((k, width), np.int64), np.zeros((k, width), np.int64)
        present, healthy = np.zeros((k, width), bool), np.zeros((k, width), bool)
        for j, b in enumerate(built):
            w = len(b.total)
            total[j, :w], used[j, :w], present[j, :w], healthy[j, :w] = b.total, b.used, b.present, b.healthy
        products = self.products
        if any(b.product not in products for b in built):
            products = products + tuple(dict.fromkeys(b.product for b in built if b.product not in products))
        codes = np.array([products.index(b.product) for b in built], np.int32)
        report_error = dict(self.report_error)
        for i, b in zip(rows, built):
            report_error.pop(i, None)
            if b.error:
                report_error[i] = b.error
        if report_error == self.report_error:
            report_error = self.report_error  # type: ignore[assignment]
        reported_at = np.array([b.reported_at for b in built], np.float64)
        has_report = np.array([b.has_report for b in built], bool)
        patched = {name: _patched(getattr(self, name), r, value) for name, value in (
            ("gpu_count", np.array([b.gpu_count for b in built], np.int32)), ("gpu_mem_total", total),
            ("used", used), ("healthy", healthy), ("present", present), ("reported_at", reported_at),
            ("has_report", has_report), ("product_code", codes))}
        patched.update((name, _patched(getattr(self, name), r, value)) for name, value in _host_arrays(built))
        trust = _trust(present, healthy, total, has_report, reported_at,
                       {j: b.error for j, b in enumerate(built) if b.error}, self.now, self.stale_after_s)
        patched.update((name, _patched(getattr(self, name), r, value)) for name, value in _arrays(trust))
        notes = self.notes + tuple(n for b in built for n in b.notes)
        same = [name for name in ("gpu_mem_total", "present", "healthy") if patched[name] is getattr(self, name)]
        if len(same) == 3 and all(tuple(st.allocations) == self.allocations[i] for i, st in zip(rows, states)):
            # The same GPUs holding the same resolved pods (most reports: a model cached, memory
            # in use, a new date): what the pods commit is as it was; free memory too, unless
            # what the agent sees in use or the node's trust moved.
            resolved: dict[int, tuple[Allocation, ...]] = {}
            if patched["used"] is not self.used or patched["usable"] is not self.usable:
                free = _free(total, used, self.committed[r], self.exclusive[r], trust["usable"])
                patched.update((name, _patched(getattr(self, name), r, value)) for name, value in _arrays(free))
        else:
            accounted = [_account(st.name, total[j], present[j], healthy[j], st.allocations)
                         for j, st in enumerate(states)]
            committed = np.array([a[0] for a in accounted], np.int64).reshape(k, width)
            exclusive = np.array([a[1] for a in accounted], bool).reshape(k, width)
            notes += tuple(n for a in accounted for n in a[3])
            resolved = {i: a[2] for i, a in zip(rows, accounted)}
            free = _free(total, used, committed, exclusive, trust["usable"])
            patched.update((name, _patched(getattr(self, name), r, value)) for name, value in (
                ("committed", committed), ("exclusive", exclusive), *_arrays(free)))
        models = {i: b.models for i, b in zip(rows, built) if b.models != self.node_models[i]}
        return _evolve(
            self, **patched, report_error=report_error, products=products,
            model_cache=_recached(self.model_cache, self.node_models, models),
            node_models=rows_of(self.node_models).replaced(models),
            allocations=rows_of(self.allocations).replaced(resolved), notes=notes[-MAX_NOTES:])

    def with_requested(self, requested: Mapping[str, tuple[int, int]]) -> "ClusterSnapshot":
        """The snapshot with each named node's CPU (millicores) and memory (bytes) requested
        by every pod bound there set: a pod bound, gone or resized anywhere. Unknown nodes
        are skipped (the next rebuild counts them); nothing changed: this very snapshot."""
        found = {self.index[n]: v for n, v in requested.items() if n in self.index}
        if not found:
            return self
        r = np.fromiter(found, np.int64, len(found))
        cpu = np.array([_cpu_milli(v[0]) for v in found.values()], np.int64)
        ram = np.array([_ram(v[1]) for v in found.values()], np.int64)
        cpu_requested = _patched(self.cpu_requested, r, cpu)
        ram_requested = _patched(self.ram_requested, r, ram)
        if cpu_requested is self.cpu_requested and ram_requested is self.ram_requested:
            return self
        return _evolve(self, cpu_requested=cpu_requested, ram_requested=ram_requested,
                       cpu_free=_patched(self.cpu_free, r, _host_free(self.cpu_allocatable[r], cpu, CPU_UNKNOWN)),
                       ram_free=_patched(self.ram_free, r, _host_free(self.ram_allocatable[r], ram, RAM_UNKNOWN)))

    def _with_rows_allocations(self, changes: Mapping[int, list[Allocation]]) -> "ClusterSnapshot":
        rows = list(changes)
        r = np.array(rows, np.int64)
        accounted = [_account(self.names[i], self.gpu_mem_total[i], self.present[i], self.healthy[i], changes[i])
                     for i in rows]
        committed = np.array([a[0] for a in accounted], np.int64).reshape(len(rows), self.gpus)
        exclusive = np.array([a[1] for a in accounted], bool).reshape(len(rows), self.gpus)
        notes = self.notes
        for a in accounted:
            notes += a[3]
        free = _free(self.gpu_mem_total[r], self.used[r], committed, exclusive, self.usable[r])
        return _evolve(
            self, committed=_patched(self.committed, r, committed), exclusive=_patched(self.exclusive, r, exclusive),
            allocations=rows_of(self.allocations).replaced({i: a[2] for i, a in zip(rows, accounted)}),
            notes=notes[-MAX_NOTES:],  # a long-lived snapshot lineage must not grow
            **{name: _patched(getattr(self, name), r, value) for name, value in _arrays(free)})


def _arrays(derived: _Trust | _Free) -> list[tuple[str, np.ndarray]]:
    return [(name, cast(np.ndarray, value)) for name, value in derived.items()]


def _patched(whole: np.ndarray, rows: np.ndarray, part: np.ndarray) -> np.ndarray:
    """`whole` with `rows` set from `part`: a read-only copy, or `whole` itself where those
    rows hold `part` already (the row memo then skips the array without comparing it)."""
    if len(rows) == 1 and whole.ndim == 1:  # one row's scalar: most events, for 20-odd arrays each
        a, b = whole.item(int(rows[0])), part.item(0)
        if a == b or (a != a and b != b):  # NaN (reported_at: never said) equals NaN here
            return whole
    else:
        now = whole[rows]
        same = now == part
        if whole.dtype.kind == "f":
            same |= np.isnan(now) & np.isnan(part)
        if same.all():
            return whole
    out = whole.copy()
    out[rows] = part
    return _frozen(out)


def _evolve(s: ClusterSnapshot, **changes: object) -> ClusterSnapshot:
    """`s` with `changes`, as dataclasses.replace would make it, without running __init__
    over its 34 fields again (a watch event's update is made of little else)."""
    out = object.__new__(ClusterSnapshot)
    out.__dict__.update(s.__dict__)
    out.__dict__.update(changes)
    return out


def _recached(cache: Mapping[str, ModelCache], before: Sequence[tuple[CachedModel, ...]],
              after: Mapping[int, tuple[CachedModel, ...]]) -> Mapping[str, ModelCache]:
    """`cache` with each row of `after` holding those models instead of what `before` says
    it held: entries of the models named either way rebuilt, in row order, as
    build_snapshot orders them; a model no node holds any more has no entry."""
    touched = {m.model for i, models in after.items() for m in (*before[i], *models)}
    if not touched:
        return cache
    out = dict(cache)
    tiers = {t: i for i, t in enumerate(contract.CACHE_TIERS)}
    rows = list(after)
    gone = np.array(rows, np.int64)
    for model in touched:
        old = out.pop(model, None)
        if old is None:
            old = ModelCache(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8))
        idx, size, tier = old
        keep = idx != rows[0] if len(rows) == 1 else ~np.isin(idx, gone)
        add = [(i, m.bytes, tiers[m.tier]) for i, models in after.items() for m in models if m.model == model]
        idx = np.concatenate([idx[keep], np.array([a[0] for a in add], np.int64)])
        if not len(idx):
            continue
        order = np.argsort(idx, kind="stable")
        out[model] = ModelCache(_frozen(idx[order]),
                                _frozen(np.concatenate([size[keep], np.array([a[1] for a in add], np.int64)])[order]),
                                _frozen(np.concatenate([tier[keep], np.array([a[2] for a in add], np.int8)])[order]))
    return out


def first_match(cases: Sequence[tuple[Any, Any]], default: int) -> np.ndarray:
    """np.select(conditions, choices, default) as nested np.where: the same answer, a third
    of the cost on the one row a node report derives (np.select's fixed cost is ~12 us)."""
    out: Any = default
    for cond, choice in reversed(cases):
        out = np.where(cond, choice, out)
    return np.asarray(out)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _trust(present: np.ndarray, healthy: np.ndarray, total: np.ndarray, has_report: np.ndarray,
           reported_at: np.ndarray, report_error: Mapping[int, str], now: float, stale_after_s: float) -> _Trust:
    """Which nodes and GPUs are trusted at `now`, for all rows."""
    age = now - reported_at
    with np.errstate(invalid="ignore"):
        stale = has_report & (np.isnan(age) | (age > stale_after_s))
        # A report dated ahead of our clock would stay "fresh" that much longer after its
        # agent died (abs(age) gave a +599 s date 20 minutes of trust): past a small skew it
        # is refused, with its own reason, however fresh it claims to be.
        skewed = has_report & (age < -min(MAX_CLOCK_SKEW_S, stale_after_s))
    bad = np.zeros(len(has_report), bool)
    bad[list(report_error)] = True
    no_gpus = ~present.any(axis=1)
    status = first_match(((bad, BAD_REPORT), (skewed, CLOCK_SKEW), (stale, STALE), (no_gpus, NO_GPUS)), OK).astype(np.int8)
    usable = present & healthy & (status == OK)[:, None]
    return _Trust(
        status=_frozen(status), stale=_frozen(stale), usable=_frozen(usable),
        usable_total=_frozen(np.where(usable, total, 0).sum(axis=1)),
        unhealthy_count=_frozen((present & ~healthy).sum(axis=1)),
        memory_known=_frozen(np.any(np.where(present, total, 0) > 0, axis=1)),
    )


def _host_free(allocatable: np.ndarray, requested: np.ndarray, unknown: int) -> np.ndarray:
    """CPU or memory a new pod may still ask: allocatable less requested (0 when over, as
    a node can be after its kubelet admitted static pods), `unknown` where not known."""
    return np.where(allocatable > 0, np.maximum(allocatable - requested, 0), unknown)


def _host_arrays(rows: Sequence[_Row]) -> tuple[tuple[str, np.ndarray], ...]:
    """The CPU and memory columns of these rows, by snapshot field."""
    cpu_alloc = np.array([r.cpu_allocatable for r in rows], np.int64)
    cpu_req = np.array([r.cpu_requested for r in rows], np.int64)
    ram_alloc = np.array([r.ram_allocatable for r in rows], np.int64)
    ram_req = np.array([r.ram_requested for r in rows], np.int64)
    return (("cpu_allocatable", cpu_alloc), ("cpu_requested", cpu_req),
            ("cpu_free", _host_free(cpu_alloc, cpu_req, CPU_UNKNOWN)), ("ram_allocatable", ram_alloc),
            ("ram_requested", ram_req), ("ram_free", _host_free(ram_alloc, ram_req, RAM_UNKNOWN)))


def _free(total: np.ndarray, used: np.ndarray, committed: np.ndarray, exclusive: np.ndarray,
          usable: np.ndarray) -> _Free:
    """Free memory and whole-GPU availability, for all rows or a slice of them."""
    free = np.where(usable, np.maximum(total - np.maximum(committed, used), 0), 0)
    whole_free = usable & ~exclusive & (committed == 0) & (used == 0)
    return _Free(
        free=_frozen(free),
        whole_free=_frozen(whole_free),
        max_free=_frozen(free.max(axis=1, initial=0)),
        free_total=_frozen(free.sum(axis=1)),
        partial_free=_frozen(np.where(whole_free, 0, free).sum(axis=1)),
        whole_free_count=_frozen(whole_free.sum(axis=1)),
    )


def build_snapshot(nodes: Sequence[NodeState], now: float, stale_after_s: float,
                   previous: ClusterSnapshot | None = None) -> ClusterSnapshot:
    """Stack nodes into a snapshot. Not the hot path (one Python pass over the nodes).

    When `previous` had the same node names in the same order (a rebuild for a changed
    report, not for a node added or gone), the new snapshot keeps its `names` and `index`
    objects, so a reader can tell by identity that rows still mean the same nodes."""
    if not stale_after_s > 0:
        raise SnapshotError(f"stale_after_s must be positive, got {stale_after_s!r}")
    names = tuple(n.name for n in nodes)
    if previous is not None and previous.names == names:
        names, index = previous.names, previous.index
    else:
        # Copies made one after another, so the index's keys lie together in memory rather
        # than among the node objects they were read from: kube-scheduler's 5,000 names in a
        # new order each filter call are then looked up ~1.5x faster (fewer cache misses).
        names = tuple(name.encode().decode() for name in names)
        index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:3]
        raise SnapshotError(f"node names must be unique; repeated: {dup}")
    rows = [_node_row(n) for n in nodes]
    width = max((len(r.total) for r in rows), default=0) or 1
    size = len(rows)
    total = np.zeros((size, width), np.int64)
    used = np.zeros((size, width), np.int64)
    present = np.zeros((size, width), bool)
    healthy = np.zeros((size, width), bool)
    committed = np.zeros((size, width), np.int64)
    exclusive = np.zeros((size, width), bool)
    product_table: dict[str, int] = {"": 0}
    product_code = np.zeros(size, np.int32)
    cache_lists: dict[str, tuple[list[int], list[int], list[int]]] = {}
    allocations: list[tuple[Allocation, ...]] = []
    notes: list[str] = []
    tiers = {t: i for i, t in enumerate(contract.CACHE_TIERS)}
    for i, (state, r) in enumerate(zip(nodes, rows)):
        w = len(r.total)
        total[i, :w], used[i, :w], present[i, :w], healthy[i, :w] = r.total, r.used, r.present, r.healthy
        product_code[i] = product_table.setdefault(r.product, len(product_table))
        for m in r.models:
            lists = cache_lists.setdefault(m.model, ([], [], []))
            lists[0].append(i)
            lists[1].append(m.bytes)
            lists[2].append(tiers[m.tier])
        c, e, resolved, more = _account(state.name, total[i], present[i], healthy[i], state.allocations)
        committed[i], exclusive[i] = c, e
        allocations.append(resolved)
        notes += r.notes + more
    reported_at = _frozen(np.array([r.reported_at for r in rows], np.float64))
    has_report = _frozen(np.array([r.has_report for r in rows], bool))
    report_error = {i: r.error for i, r in enumerate(rows) if r.error}
    trust = _trust(present, healthy, total, has_report, reported_at, report_error, float(now), float(stale_after_s))
    return ClusterSnapshot(
        names=names, index=index,
        gpu_count=_frozen(np.array([r.gpu_count for r in rows], np.int32)),
        gpu_mem_total=_frozen(total), used=_frozen(used), committed=_frozen(committed),
        exclusive=_frozen(exclusive), healthy=_frozen(healthy), present=_frozen(present),
        reported_at=reported_at, has_report=has_report, report_error=report_error,
        product_code=_frozen(product_code), products=tuple(product_table),
        model_cache={m: ModelCache(_frozen(np.array(a, np.int64)), _frozen(np.array(b, np.int64)),
                                   _frozen(np.array(t, np.int8))) for m, (a, b, t) in cache_lists.items()},
        node_models=RowTuple(r.models for r in rows),
        allocations=RowTuple(allocations), now=float(now), stale_after_s=float(stale_after_s), notes=tuple(notes),
        **trust, **_free(total, used, committed, exclusive, trust["usable"]),
        **{name: _frozen(a) for name, a in _host_arrays(rows)},
    )
