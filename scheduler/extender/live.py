"""The extender's view of the cluster: Nodes and bound GPU pods from informers, plus
the pods it has bound itself and not yet seen come back in the watch.

Readers take `view()` (or `snapshot()`), an immutable reference swapped atomically, so
the HTTP hot path never locks and never waits on the API server. A view pairs the
snapshot with the NodeRows that turns kube-scheduler's node names into its rows: built
here whenever the node list changes, kept while only the data in the rows does. Writers (watch events, binds)
take one lock. Pod events and binds patch the snapshot row by row (copy-on-write);
node events mark it dirty and a refresher rebuilds it at most every `rebuild_every_s`.
Each rebuild also re-estimates the workload's shapes from the GPU pods it counts.

ResourceClaims allocated by kube-scheduler's DRA allocator (driver gpu.gpusched.io) count
too: each device's consumed memory on the node report's GPU of that UUID
(scheduler/core/claims.py). A claim is resolved against its node's report when it changes
and again at every rebuild, so a report that arrives after the claim still counts it.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from scheduler.core import DEFAULT_SHAPES, Allocation, ClusterSnapshot, NodeState, Shape, build_snapshot, workload_shapes
from scheduler.core.claims import HeldClaim, allocations_on, claim_held, claim_key
from scheduler.core.objects import allocation_of, node_state_of, pod_key, report_errors
from scheduler.extender.node_rows import NodeRows
from scheduler.nodeinfo import NodeReport

log = logging.getLogger(__name__)

# A pod we bound counts against its node at once; if the watch has not confirmed
# it after this long (the Binding was lost), the reservation is dropped.
ASSUME_TTL_S = 120.0


def _counts_the_same(node_a: str, a: Allocation, node_b: str, b: Allocation) -> bool:
    """Whether the snapshot would count `a` on node_a exactly as `b` on node_b: the same
    known GPUs, taken whole, or with the same memory each (a whole GPU's memory figure is
    informative only)."""
    return (node_a == node_b and bool(a.gpu_ids) and a.gpu_ids == b.gpu_ids and a.whole == b.whole
            and (a.whole or a.memory_per_gpu == b.memory_per_gpu) and not a.inferred and not b.inferred)


class View(NamedTuple):
    snapshot: ClusterSnapshot
    rows: NodeRows  # of snapshot.names


@dataclass
class _Assumed:
    node: str
    alloc: Allocation
    deadline: float


class LiveState:
    def __init__(self, stale_after_s: float = 600.0, rebuild_every_s: float = 0.2, clock=time.time,
                 on_report_error: Callable[[str, str], None] | None = None):
        self.stale_after_s = stale_after_s
        # told (node, why) when a node's report becomes untrusted or its reason changes
        self.on_report_error = on_report_error
        self.rebuild_every_s = rebuild_every_s
        self.clock = clock
        self._lock = threading.RLock()
        self._nodes: dict[str, NodeState] = {}
        self._pods: dict[str, tuple[str, Allocation]] = {}
        self._assumed: dict[str, _Assumed] = {}
        self._dirty = True
        empty = build_snapshot([], now=clock(), stale_after_s=stale_after_s)
        self._view = View(empty, NodeRows(empty.names, empty.index))
        self.built_at = 0.0  # wall time of the last full rebuild
        # the workload fragmentation is weighed against, re-estimated at each rebuild
        self.shapes: tuple[Shape, ...] = DEFAULT_SHAPES
        self.node_report_errors: dict[str, tuple[str, ...]] = {}
        # what each allocated claim holds, and why parts of it were not read
        self._claims: dict[str, tuple[HeldClaim, tuple[str, ...]]] = {}
        # the allocation keys each claim has in the current snapshot, and on which node
        self._claim_keys: dict[str, tuple[str, tuple[str, ...]]] = {}
        # why (part of) a claim is not counted, by claim key; logged when it changes
        self.claim_problems: dict[str, tuple[str, ...]] = {}
        # each claim's allocations as last resolved, with the claim and report they came from
        self._claim_resolved: dict[str, tuple[HeldClaim, NodeReport, list[Allocation]]] = {}

    # ---------- readers (lock-free)

    def view(self) -> View:
        return self._view

    def snapshot(self) -> ClusterSnapshot:
        return self._view.snapshot

    def _publish(self, snap: ClusterSnapshot) -> None:
        """Make `snap` the current snapshot (under the lock), with NodeRows of its names:
        the current one while the names are the same object, else a new one, built here
        rather than in the first filter call after."""
        rows = self._view.rows
        if snap.names is not rows.names:
            rows = NodeRows(snap.names, snap.index)
        self._view = View(snap, rows)

    # ---------- node events

    def set_nodes(self, nodes: list[dict[str, Any]]) -> None:
        with self._lock:
            self._nodes = {}
            for n in nodes:
                self._put_node(n)
            self._dirty = True
        self.rebuild()

    def on_node(self, typ: str, node: dict[str, Any]) -> None:
        with self._lock:
            name = (node.get("metadata") or {}).get("name", "")
            if typ == "DELETED":
                self._dirty |= self._nodes.pop(name, None) is not None
            else:
                # Most node updates are heartbeats (conditions, lease times); a full rebuild
                # for each would cost the hot path CPU for nothing.
                self._dirty |= self._put_node(node)

    def _put_node(self, node: dict[str, Any]) -> bool:
        """Store what the snapshot reads of `node`; True when that changed."""
        state = node_state_of(node)
        errors = report_errors(state)
        if errors:
            if self.node_report_errors.get(state.name) != errors:
                log.warning("node %s: gpusched report not trusted: %s", state.name, "; ".join(errors))
                if self.on_report_error is not None:
                    self.on_report_error(state.name, "gpusched report not trusted: " + "; ".join(errors))
            self.node_report_errors[state.name] = errors
        else:
            self.node_report_errors.pop(state.name, None)
        changed = self._nodes.get(state.name) != state
        self._nodes[state.name] = state
        return changed

    # ---------- pod events

    def set_pods(self, pods: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pods = {}
            for p in pods:
                held = allocation_of(p)
                if held:
                    self._pods[pod_key(p)] = held
                    self._assumed.pop(pod_key(p), None)
            self._dirty = True
        self.rebuild()

    def on_pod(self, typ: str, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        held = None if typ == "DELETED" else allocation_of(pod)
        with self._lock:
            before = self._pods.get(key)
            if held is not None and held == before and key not in self._assumed:
                return  # a status update (kwok, kubelet): what the pod holds did not change
            self._pods.pop(key, None)
            if held:
                self._pods[key] = held
            assumed = self._assumed.pop(key, None) if held or typ == "DELETED" else None
            if assumed and held and before is None and _counts_the_same(assumed.node, assumed.alloc, *held):
                return  # the watch shows what our bind reserved: the snapshot counts it already
            snap = self._view.snapshot
            for node in ([before[0]] if before else []) + ([assumed.node] if assumed else []):
                snap = snap.without_allocation(node, key)
            if held:
                snap = snap.with_allocation(*held)
            self._publish(snap)

    # ---------- ResourceClaim events

    def _note_claim(self, key: str, problems: tuple[str, ...]) -> None:
        if not problems:
            self.claim_problems.pop(key, None)
        elif self.claim_problems.get(key) != problems:
            log.warning("ResourceClaim %s: not counted: %s", key.removeprefix("claim:"), "; ".join(problems))
            self.claim_problems[key] = problems

    def _claim_allocations(self, held: HeldClaim, read_problems: tuple[str, ...] = ()) -> list[Allocation]:
        state = self._nodes.get(held.node)
        report = state.report if state is not None else None
        cached = self._claim_resolved.get(held.key)
        # Resolving every claim again at each rebuild cost as much as the rest of the rebuild
        # (8 claims a node); the same claim against the same report object resolves the same.
        if cached is not None and cached[0] is held and cached[1] is report and report is not None:
            return cached[2]
        allocs, problems = allocations_on(held, state)
        self._note_claim(held.key, read_problems + problems)
        if report is not None:
            self._claim_resolved[held.key] = (held, report, allocs)
        return allocs

    def set_claims(self, claims: list[dict[str, Any]]) -> None:
        with self._lock:
            self._claims = {}
            self._claim_resolved = {}
            self.claim_problems = {}
            for c in claims:
                held, problems = claim_held(c)
                self._note_claim(claim_key(c) if isinstance(c, dict) else "claim:?", problems)
                if held is not None:
                    self._claims[held.key] = (held, problems)
            self._dirty = True
        self.rebuild()

    def on_claim(self, typ: str, claim: dict[str, Any]) -> None:
        key = claim_key(claim)
        held, problems = (None, ()) if typ == "DELETED" else claim_held(claim)
        with self._lock:
            if held is not None and (held, problems) == self._claims.get(key):
                return  # reservedFor or another field changed, not what the claim holds
            if held is None and key not in self._claims and key not in self._claim_keys:
                self._note_claim(key, problems)
                return  # not ours or not allocated, before and now: the snapshot is the same
            self._claims.pop(key, None)
            self._claim_resolved.pop(key, None)
            allocs: list[Allocation] = []
            if held is not None:
                self._claims[key] = (held, problems)
                allocs = self._claim_allocations(held, problems)
            else:
                self._note_claim(key, problems)
            snap = self._view.snapshot
            node, keys = self._claim_keys.pop(key, ("", ()))
            for k in keys:
                snap = snap.without_allocation(node, k)
            for a in allocs:
                snap = snap.with_allocation(held.node if held else "", a)
            if held is not None:
                self._claim_keys[key] = (held.node, tuple(a.pod_key for a in allocs))
            self._publish(snap)

    # ---------- binds

    def assume(self, node: str, alloc: Allocation, now: float | None = None) -> None:
        """Count a pod against its node at once, before the watch shows the binding."""
        with self._lock:
            self._assumed[alloc.pod_key] = _Assumed(node, alloc, (now or self.clock()) + ASSUME_TTL_S)
            self._publish(self._view.snapshot.with_allocation(node, alloc))

    def forget(self, node: str, key: str) -> None:
        """Release what a failed bind reserved. What the watch has confirmed for the pod
        stays counted (a bind can fail because the pod is already bound)."""
        with self._lock:
            if self._assumed.pop(key, None) is not None:
                snap = self._view.snapshot.without_allocation(node, key)
                confirmed = self._pods.get(key)
                if confirmed is not None:
                    snap = snap.with_allocation(*confirmed)
                self._publish(snap)

    def placed_on(self, key: str) -> str | None:
        """The node a pod is counted on: bound as the watch showed it, or reserved by a bind."""
        with self._lock:
            if key in self._pods:
                return self._pods[key][0]
            assumed = self._assumed.get(key)
            return assumed.node if assumed else None

    def node_state(self, name: str) -> NodeState | None:
        """What was read of a node (its report's GPUs by UUID): claim pods map devices with it."""
        return self._nodes.get(name)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # ---------- rebuilds

    def rebuild(self, now: float | None = None) -> None:
        now = now or self.clock()
        with self._lock:
            for key in [k for k, a in self._assumed.items() if a.deadline < now]:
                log.warning("pod %s: binding never showed up in the watch; releasing its reservation", key)
                del self._assumed[key]
            per_node: dict[str, list[Allocation]] = {}
            for node, alloc in self._pods.values():
                per_node.setdefault(node, []).append(alloc)
            for a in self._assumed.values():
                per_node.setdefault(a.node, []).append(a.alloc)
            self._claim_keys = {}
            for key, (held, problems) in self._claims.items():
                allocs = self._claim_allocations(held, problems)
                per_node.setdefault(held.node, []).extend(allocs)
                self._claim_keys[key] = (held.node, tuple(a.pod_key for a in allocs))
            nodes = [NodeState(n.name, n.gpu_count, n.product, n.gpu_memory_label_mib, n.report,
                               per_node.get(n.name, []), n.kubelet_gpus) for n in self._nodes.values()]
            snap = build_snapshot(nodes, now=now, stale_after_s=self.stale_after_s, previous=self._view.snapshot)
            self._publish(snap)
            self.shapes = workload_shapes(snap)
            self._dirty = False
            self.built_at = now

    def refresh_forever(self, stop: threading.Event, max_age_s: float = 10.0) -> None:
        """Rebuild when nodes changed, and every max_age_s anyway so staleness is re-judged."""
        while not stop.wait(self.rebuild_every_s):
            if self._dirty or self.clock() - self.built_at > max_age_s:
                try:
                    self.rebuild()
                except Exception:  # never let the refresher die; the next tick retries
                    log.exception("snapshot rebuild failed")
