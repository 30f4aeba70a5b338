"""Pods of the gpusched profile that ask GPU memory by ResourceClaim of gpu.gpusched.io
("claim pods"), beside annotation shares on the same nodes (docs/ownership.md).

kube-scheduler's DRA allocator picks a claim pod's device and writes the claim's
allocation in PreBind, before it calls our bind; it does not see annotation shares. So:
- filter passes a node only when every device the allocator could pick there is free in
  gpusched's accounting too (scheduler/core/claim_fit.py), from an index of this driver's
  ResourceSlices and of every claim (what unallocated ones ask, what allocated ones hold);
- bind reads the pod's claims from the API server (PreBind's write must be seen), refuses
  a claim unallocated, allocated elsewhere or over-committing a GPU in gpusched's records,
  and counts the allocation in the live state before the Binding goes out, so the next
  share's filter (which waits for binds in flight) sees it. The claim is the record: no
  gpu-ids annotation is written for it.

Writes take the live state's lock (bind holds it while it checks and counts, and the claim
events go through here to the live state, in that lock order); the filter reads immutable
values without locks.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from scheduler import contract
from scheduler.core import PodRequest, RequestError, parse_pod
from scheduler.core.claim_fit import (ClaimDemand, NodeDevices, SliceDevice, claim_demand, fit_claims, fit_reason,
                                      overcommit, pod_claims, slice_devices)
from scheduler.core.beside_claims import claim_beside_plugin
from scheduler.core.claims import HeldClaim, allocations_on, claim_held, claim_key
from scheduler.core.snapshot import MAX_GPUS, ClusterSnapshot
from scheduler.extender.live import LiveState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Claim:
    demand: ClaimDemand | None  # unallocated: what it asks of our class
    problem: str | None  # why its asks cannot be placed
    held: HeldClaim | None  # allocated: what it holds of our driver


@dataclass(frozen=True)
class ClaimPod:
    key: str
    demands: tuple[ClaimDemand, ...] = ()
    allocated: tuple[HeldClaim, ...] = ()
    error: str = ""

    @property
    def asks(self) -> tuple[int | None, ...]:
        return tuple(m for d in self.demands for m in d.asks)

    @property
    def request(self) -> PodRequest:
        """The annotation request it is scored like: its largest share, or its whole GPUs."""
        shares = [m for m in self.asks if m is not None]
        if shares:
            return PodRequest(gpu_memory=max(shares))
        return PodRequest(whole_gpus=max(len(self.asks), 1))


_Row = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_NO_DEVICES: _Row = (np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, np.int64))


DELETED_KEPT = 4096  # deleted claims remembered: a bind's GET precedes its count by milliseconds


def _rv(obj: dict[str, Any]) -> int | None:
    try:
        return int(str((obj.get("metadata") or {}).get("resourceVersion")))
    except ValueError:
        return None


@dataclass
class ClaimPods:
    live: LiveState
    get_claim: Callable[[str, str], dict[str, Any] | None]  # the API server's copy (namespace, name)
    _slices: dict[str, tuple[str, tuple[SliceDevice, ...]]] = field(default_factory=dict)  # by slice name
    _devices: dict[str, tuple[SliceDevice, ...]] = field(default_factory=dict)  # by node, over its slices
    _claims: dict[str, _Claim] = field(default_factory=dict)
    _on_node: dict[str, frozenset[str]] = field(default_factory=dict)  # node -> keys of claims allocated there
    # claim key -> the resourceVersion last applied, by the watch or by bind's fresh read (deleted
    # claims: the last few thousand), so neither ever applies a copy older than the other's
    _applied: dict[str, int] = field(default_factory=dict)
    _deleted: "OrderedDict[str, int]" = field(default_factory=OrderedDict)
    # node -> (its devices, report and claims the row was made of, the row): filter's cache
    _rows: dict[str, tuple[Any, Any, Any, _Row]] = field(default_factory=dict)

    # ---------- ResourceSlice events (driver gpu.gpusched.io)

    def set_slices(self, slices: list[dict[str, Any]]) -> None:
        with self.live.lock:
            self._slices = {}
            for s in slices:
                self._put_slice("ADDED", s)
            self._devices = {}
            for node in {n for n, _ in self._slices.values()}:
                self._regroup(node)

    def on_slice(self, typ: str, rslice: dict[str, Any]) -> None:
        with self.live.lock:
            for node in self._put_slice(typ, rslice):
                self._regroup(node)

    def _put_slice(self, typ: str, rslice: dict[str, Any]) -> set[str]:
        name = str((rslice.get("metadata") or {}).get("name", ""))
        before = self._slices.pop(name, None)
        touched = {before[0]} if before else set()
        if typ != "DELETED":
            node, devices, problems = slice_devices(rslice)
            if problems:
                log.warning("ResourceSlice %s: %s", name[:80], "; ".join(problems[:3]))
            if node is not None:
                self._slices[name] = (node, devices)
                touched.add(node)
        return touched

    def _regroup(self, node: str) -> None:
        devices = tuple(d for n, ds in self._slices.values() if n == node for d in ds)
        if len(devices) > MAX_GPUS:
            # a node may publish any number of slices: past a GPU node's most, filter's
            # [candidates x devices] arrays would be the node's to size
            log.warning("node %s publishes %d gpu.gpusched.io devices; counting the first %d",
                        node[:80], len(devices), MAX_GPUS)
            devices = devices[:MAX_GPUS]
        if devices:
            self._devices[node] = devices
        else:
            self._devices.pop(node, None)

    # ---------- ResourceClaim events: indexed here, then counted by the live state

    def set_claims(self, claims: list[dict[str, Any]]) -> None:
        with self.live.lock:
            self._claims, self._on_node = {}, {}
            self._applied, self._deleted = {}, OrderedDict()
            for c in claims:
                self._index(c)
                self._saw(claim_key(c), _rv(c), deleted=False)
            self.live.set_claims(claims)

    def on_claim(self, typ: str, claim: dict[str, Any]) -> None:
        key = claim_key(claim)
        with self.live.lock:
            applied = self._applied.get(key)
            if applied is not None and typ != "DELETED":
                rv = _rv(claim)
                if rv is not None and rv < applied:
                    return  # older than what bind read from the API server and counts already
            self._saw(key, _rv(claim), deleted=typ == "DELETED")
            if typ == "DELETED":
                self._unindex(key)
            else:
                self._index(claim)
            self.live.on_claim(typ, claim)

    def _saw(self, key: str, rv: int | None, deleted: bool) -> None:
        if deleted:
            self._applied.pop(key, None)
            self._deleted[key] = rv if rv is not None else 0
            self._deleted.move_to_end(key)
            while len(self._deleted) > DELETED_KEPT:
                self._deleted.popitem(last=False)
        else:
            self._deleted.pop(key, None)
            if rv is not None:
                self._applied[key] = rv
            else:
                self._applied.pop(key, None)

    def _changed_since(self, key: str, rv: int | None) -> str | None:
        """Why bind's copy (at `rv`) is outdated by the watch, or None."""
        if key in self._deleted:
            return "was deleted"
        seen = self._applied.get(key)
        if rv is not None and seen is not None and seen > rv:
            return "changed"
        return None

    def _unindex(self, key: str) -> None:
        old = self._claims.pop(key, None)
        if old is not None and old.held is not None:
            self._on_node[old.held.node] = self._on_node.get(old.held.node, frozenset()) - {key}

    def _index(self, claim: dict[str, Any]) -> None:
        key = claim_key(claim)
        self._unindex(key)
        held, _ = claim_held(claim)
        demand, problem = claim_demand(claim)
        self._claims[key] = _Claim(demand, problem, held)
        if held is not None:
            self._on_node[held.node] = self._on_node.get(held.node, frozenset()) | {key}

    # ---------- filter and prioritize

    def pod(self, pod: dict[str, Any]) -> ClaimPod | None:
        """The pod as a claim pod, or None where none of its claims is of gpu.gpusched.io."""
        names, problem = pod_claims(pod)
        if not names and not problem:
            return None
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        if problem:
            return ClaimPod(key, error=f"gpusched: {problem}")
        ns = str(meta.get("namespace", ""))
        found = [(n, self._claims.get(f"claim:{ns}/{n}")) for n in names]
        unseen = [n for n, c in found if c is None]
        if unseen:
            return ClaimPod(key, error=f"gpusched: ResourceClaim {ns}/{unseen[0][:64]} not seen yet; retrying")
        claims = [c for _, c in found if c is not None]
        bad = next((c.problem for c in claims if c.problem), None)
        demands = tuple(c.demand for c in claims if c.demand is not None)
        allocated = tuple(c.held for c in claims if c.held is not None)
        if not demands and not allocated and not bad:
            return None  # claims of other drivers only
        try:
            also = parse_pod(pod).gpu_pod
        except RequestError as exc:
            return ClaimPod(key, error=f"gpusched: {exc}")
        if bad or also:
            why = bad or (f"asks GPUs both by ResourceClaim ({contract.DRA_DRIVER}) and by "
                          f"{contract.GPU_MEMORY} or {contract.GPU_RESOURCE}; use one")
            return ClaimPod(key, error=f"gpusched: {why}")
        return ClaimPod(key, demands, allocated)

    def filter(self, snap: ClusterSnapshot, cp: ClaimPod, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Which candidate rows (-1: not in the snapshot) may take the claim pod, and each other's reason."""
        if cp.error:
            return np.zeros(len(rows), bool), [cp.error] * len(rows)
        ok = np.ones(len(rows), bool)
        why: dict[int, str] = {}
        for held in cp.allocated:  # placed already: only on its node, and not over-committing there
            for i, r in enumerate(rows.tolist()):
                name = snap.names[r] if r >= 0 else ""
                if name != held.node:
                    ok[i], why[i] = False, why.get(i) or f"gpusched: {held.key[6:]} is allocated on {held.node}"
                else:
                    plugin = self.live.device_plugin_pods_on(held.node)
                    bad = claim_beside_plugin(held.node, plugin) if plugin else self._overcommit(snap, held)
                    if bad:
                        ok[i], why[i] = False, why.get(i) or f"gpusched: {held.key[6:]} on {held.node}: {bad}"
        asks = cp.asks
        if asks:
            devices = self._node_devices(snap, rows)
            fits, code, column = fit_claims(asks, devices)
            for i in np.flatnonzero(~fits).tolist():
                if ok[i]:
                    ok[i], why[i] = False, self._reason(snap, rows, asks, devices, i, int(code[i]), int(column[i]))
        return ok, [why[i] for i in np.flatnonzero(~ok).tolist()]

    def _node_devices(self, snap: ClusterSnapshot, rows: np.ndarray) -> NodeDevices:
        """The candidates' devices as [R, D] arrays: each node's row from its cache (rebuilt
        when its slices, report or claims change), then flat numpy gathers over all of them."""
        entries = [self._row(snap.names[r]) if r >= 0 else _NO_DEVICES for r in rows.tolist()]
        lengths = np.fromiter((len(e[0]) for e in entries), np.int64, len(entries))
        width = int(lengths.max(initial=0)) or 1
        shape = (len(rows), width)
        present = np.zeros(shape, bool)
        capacity, claimed, free = np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        multiple, whole_free = np.zeros(shape, bool), np.zeros(shape, bool)
        if lengths.any():
            at = np.repeat(np.arange(len(rows)), lengths)
            col = np.arange(len(at)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            cap, mult, used, gpu = (np.concatenate([e[k] for e in entries]) for k in range(4))
            present[at, col], capacity[at, col], multiple[at, col], claimed[at, col] = True, cap, mult, used
            # a device gpusched cannot count (not in the node's report) keeps free 0
            known = (gpu >= 0) & (gpu < snap.gpus)
            node_rows, g = rows[at][known], gpu[known]
            free[at[known], col[known]] = snap.free[node_rows, g]
            whole_free[at[known], col[known]] = snap.whole_free[node_rows, g]
        return NodeDevices(present, capacity, multiple, claimed, free, whole_free)

    def device_count(self, node: str) -> int:
        """The gpu.gpusched.io devices read from `node`'s ResourceSlices: none until the slice
        watch has shown them, and until then no claim pod passes the node."""
        return len(self._devices.get(node, ()))

    def _row(self, node: str) -> "_Row":
        """(capacity, multiple, claimed, GPU index or -1) of a node's devices, cached."""
        devices = self._devices.get(node, ())
        state = self.live.node_state(node)
        report = state.report if state is not None else None
        on = self._on_node.get(node)
        hit = self._rows.get(node)
        if hit is not None and hit[0] is devices and hit[1] is report and hit[2] is on:
            return hit[3]
        gpus = self._gpus_of(node)
        used = self._claimed_on(node, devices)
        row: _Row = (np.array([d.capacity for d in devices], np.int64),
                     np.array([d.multiple for d in devices], bool),
                     np.array([used.get(d.name, 0) for d in devices], np.int64),
                     np.array([gpus.get(d.name, -1) for d in devices], np.int64))
        if devices:
            self._rows[node] = (devices, report, on, row)
        else:
            self._rows.pop(node, None)
        return row

    def _gpus_of(self, node: str) -> dict[str, int]:
        state = self.live.node_state(node)
        gpus = state.report.gpus if state is not None and state.report is not None else ()
        return {g.uuid.lower(): g.index for g in gpus if g.uuid}

    def _claimed_on(self, node: str, devices: tuple[SliceDevice, ...]) -> dict[str, int]:
        """What allocated claims consume of each device, as the allocator counts it."""
        capacity = {d.name: d.capacity for d in devices}
        out: dict[str, int] = {}
        for key in self._on_node.get(node, frozenset()):
            c = self._claims.get(key)
            for hd in c.held.devices if c is not None and c.held is not None else ():
                out[hd.device] = out.get(hd.device, 0) + (capacity.get(hd.device, 0) if hd.consumed is None
                                                          else hd.consumed)
        return out

    def _reason(self, snap: ClusterSnapshot, rows: np.ndarray, asks: tuple[int | None, ...], d: NodeDevices,
                i: int, code: int, j: int) -> str:
        r = rows[i]
        devices = self._devices.get(snap.names[r], ()) if r >= 0 else ()
        name = devices[j].name if j < len(devices) else "?"
        gpu = self._gpus_of(snap.names[r]).get(name) if r >= 0 else None
        return fit_reason(code, asks, name, gpu, int(max(d.capacity[i, j] - d.claimed[i, j], 0)), int(d.free[i, j]))

    def _overcommit(self, snap: ClusterSnapshot, held: HeldClaim) -> str | None:
        row = snap.index.get(held.node)
        if row is None:
            return "the node is not in gpusched's view"
        allocs, problems = allocations_on(held, self.live.node_state(held.node))
        if problems:
            return f"gpusched cannot count it ({problems[0]})"
        totals = {g: int(snap.gpu_mem_total[row, g]) for g in range(snap.gpus)}
        return overcommit(allocs, snap.allocations[row], totals, held.key + "#")

    # ---------- bind

    def bind(self, pod: dict[str, Any], node: str) -> str | None:
        """Before the Binding of `pod` (the API server's copy) to `node`: None where it uses no
        claim of ours or its claims check out (and are then counted); else the refusal."""
        names, problem = pod_claims(pod)
        if problem or not names:
            return problem
        meta = pod.get("metadata") or {}
        ns, uid = str(meta.get("namespace", "")), meta.get("uid")
        fresh: list[tuple[dict[str, Any], HeldClaim]] = []
        for name in names:
            try:
                claim = self.get_claim(ns, name)  # PreBind wrote it just now; a watch may not have it yet
            except Exception as exc:
                return f"cannot read ResourceClaim {ns}/{name}: {type(exc).__name__}"
            if claim is None:
                return f"ResourceClaim {ns}/{name} does not exist"
            held, problems = claim_held(claim)
            demand, _ = claim_demand(claim)
            if held is None:
                if demand is not None or problems:
                    return (f"ResourceClaim {ns}/{name} is not allocated a {contract.DRA_DRIVER} device"
                            + (f" ({problems[0]})" if problems else ""))
                continue  # another driver's
            if held.node != node:
                return f"ResourceClaim {ns}/{name} is allocated on {held.node}, not {node}"
            reserved = (claim.get("status") or {}).get("reservedFor") or []
            uids = {e.get("uid") for e in reserved if isinstance(e, dict)}
            if uid not in uids:
                return f"ResourceClaim {ns}/{name} is not reserved for this pod"
            fresh.append((claim, held) if uids == {uid} else (claim, HeldClaim(held.key, held.node, ())))
        if not fresh:
            return None
        with self.live.lock:
            plugin = self.live.device_plugin_pods_on(node)
            if plugin:  # bound since the filter refused such nodes: see scheduler/core/beside_claims.py
                return claim_beside_plugin(node, plugin)
            snap = self.live.snapshot()
            for _, held in fresh:
                if not held.devices:
                    continue  # shared with pods that run already: counted when they were bound
                bad = self._overcommit(snap, held)
                if bad:
                    log.warning("bind to %s refused: %s: %s", node, held.key, bad)
                    return (f"kube-scheduler's allocator gave ResourceClaim {held.key[6:]} what gpusched's "
                            f"records hold on {node}: {bad}; kube-scheduler retries the pod")
            for claim, _ in fresh:
                key, rv = claim_key(claim), _rv(claim)
                gone = self._changed_since(key, rv)
                if gone:
                    # read before a deallocation or delete the watch has applied since: writing
                    # that copy back would count a claim nobody holds until the next relist
                    return (f"ResourceClaim {key[6:]} {gone} while gpusched was binding the pod; "
                            "kube-scheduler retries the pod")
            for claim, _ in fresh:
                self.on_claim("MODIFIED", claim)  # counted now, as the watch will show it
        return None
