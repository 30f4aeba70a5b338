"""The placement simulator decides as the live extender does (issue #6, the scheduler half).

The simulator's `ours.Gpusched` policy replays a small synthetic trace on its own
ClusterSnapshot. In lock-step, the live extender sees the same cluster the way its
daemon does: the simulated nodes as Kubernetes Node objects carrying the node agent's
annotations and GPU feature discovery's labels (benchmarks.testbed.nodes.node_body, the
nodeinfo codec) fed to LiveState.set_nodes; each pod as a Pod object (the
`gpusched.io/gpu-memory` annotation for a share, `nvidia.com/gpu` limits for whole GPUs,
`gpusched.io/gpu-products` for a GPU spec) sent through Extender.filter, prioritize and
bind as the JSON bytes kube-scheduler sends. This file plays kube-scheduler (its
NodeResourcesFit on cpu, memory and nvidia.com/gpu decides which NodeNames go to the
extender; a node of the highest extender score wins, the simulator's draw among ties
standing for selectHost's) and the API
server (the binder records the annotations; the bound pod comes back through
LiveState.on_pod as the watch delivers it). CPU-only pods are not gpusched's: the
default kube-scheduler places them (Kube.default_pick, its LeastAllocated and
BalancedAllocation scores computed here from the objects), as the simulator does for
every policy (policies.kube_default; here both take the first of tied nodes, rng=None,
where the replay draws among them, so that the two pick alike).

Per pod: the same feasible nodes, the same integer score on every node, the extender's
top node is the simulator's, and the `gpusched.io/gpu-ids` the extender wrote are the
simulator's GPUs; after each pod both snapshots count the same memory on the same GPUs.

Fragmentation is weighed against the workload's shapes. The extender re-learns them from
the GPU pods it counts and the whole-GPU pods its pending pods' informer holds at each
snapshot rebuild; the bench's `gpusched` row re-learns them from the pods placed so far
and those that fit nowhere every ours.RELEARN_EVERY placements. The first test
pins both to DEFAULT_SHAPES; the last drives the bench's own row and rebuilds the
extender's snapshot each time the simulator re-learns, so both learn the same shapes.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from benchmarks.placement import ours, policies, sim
from benchmarks.placement.state import State
from benchmarks.placement.trace import MILLI, Nodes, Pod, Pods
from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import ALIBABA_GPU_MIB, NodeSpec
from scheduler import contract
from scheduler.core import DEFAULT_SHAPES, parse_pod
from scheduler.extender.live import LiveState
from scheduler.extender.pending import PendingPods
from scheduler.extender.server import Extender
from scheduler.nodeinfo import MiB
from scheduler.quantity import parse_bytes
from tests.benchmarks.placement.test_sim import synthetic
from tests.benchmarks.placement.tiny import nodes

NAMESPACE = "bench"
REPORTED_AT = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = REPORTED_AT.timestamp() + 30.0  # the agent reported 30 s ago: fresh under the default 600 s
GO = (",", ":")  # compact, as Go writes the extender calls (the extender reads those names as rows)


def cluster() -> Nodes:
    """One GPU memory size (G2 and G3 are both 81920 MiB), so every pod is one request;
    two products, so a gpu_spec of G3 narrows the feasible set. The four small nodes run
    out of CPU before their GPUs."""
    return nodes(*[(96000, 393216, 8, "G2")] * 9, *[(96000, 786432, 8, "G3")] * 3, *[(24000, 131072, 8, "G2")] * 4)


def trace() -> Pods:
    return synthetic(150, seed=21, specs=("", "", "G3"))


def gpu_mib(ns: Nodes) -> int:
    sizes = {ALIBABA_GPU_MIB[m][1] for m in ns.model}
    assert len(sizes) == 1, "one GPU memory size, so each pod is one request"
    return sizes.pop()


# ---------- the cluster as Kubernetes objects


def node_objects(ns: Nodes) -> list[dict[str, Any]]:
    """The simulated nodes as the API server holds them: the Alibaba profile's NodeSpec
    (no driver reservation, as ALIBABA_GPU_MIB's sizes are what the sim counts) rendered
    by the test bed's node_body, the node agent's report included."""
    out = []
    for name, cpu, mem, gpus, model in zip(ns.names, ns.cpu_milli, ns.memory_mib, ns.gpus, ns.model):
        product, mib = ALIBABA_GPU_MIB[model]
        body = node_body(NodeSpec(name, int(gpus), product, mib, cpu_milli=int(cpu), memory_mib=int(mem)),
                         now=REPORTED_AT)
        out.append(json.loads(json.dumps(body)))  # what the informer decodes: plain JSON
    return out


def pod_object(p: Pod, mib: int) -> dict[str, Any]:
    """The pod a user's chart would create for a trace pod: a share asks for its fraction of
    the cluster's GPU memory in bytes, whole GPUs through the device plugin's resource, a
    gpu_spec through gpusched.io/gpu-products."""
    annotations: dict[str, str] = {}
    requests = {"cpu": f"{p.cpu_milli}m"}
    if p.memory_mib:
        requests["memory"] = f"{p.memory_mib}Mi"
    limits: dict[str, str] = {}
    if p.kind == "share":
        annotations[contract.GPU_MEMORY] = str(p.gpu_milli * mib * MiB // MILLI)
    elif p.kind == "whole":
        limits[contract.GPU_RESOURCE] = str(p.num_gpu)
    if p.gpu_spec:
        annotations[contract.GPU_PRODUCTS] = ",".join(sorted(ALIBABA_GPU_MIB[m][0] for m in p.gpu_spec))
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": p.key, "namespace": NAMESPACE, "uid": f"uid-{p.key}", "annotations": annotations},
        "spec": {"schedulerName": contract.SCHEDULER_NAME,
                 "containers": [{"name": "main", "image": "x", "resources": {"requests": requests, "limits": limits}}]},
        "status": {"phase": "Pending"},
    }


def _cpu_milli(q: str) -> int:
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


@dataclass
class Kube:
    """kube-scheduler's own part (NodeResourcesFit) and the API server's, over the objects."""
    node_list: list[dict[str, Any]]
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> pod as the API server holds it
    bindings: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # name -> (node, annotations)
    # the extender daemon's informer of gpusched's pending pods, whose whole-GPU asks it learns from
    pending: PendingPods = field(default_factory=PendingPods)

    @staticmethod
    def _requests(pod: dict[str, Any]) -> tuple[int, int, int]:
        cpu = mem = gpu = 0
        for c in pod["spec"]["containers"]:
            res = c["resources"]
            cpu += _cpu_milli(res["requests"]["cpu"])
            mem += parse_bytes(res["requests"]["memory"]) if "memory" in res["requests"] else 0
            gpu += int(res["limits"].get(contract.GPU_RESOURCE, 0))
        return cpu, mem, gpu

    @staticmethod
    def _scored(pod: dict[str, Any]) -> np.ndarray:
        """cpu (milli) and memory (bytes) as kube-scheduler scores them: 100m and 200Mi for
        a request of 0 (NonZeroRequested)."""
        cpu, mem, _ = Kube._requests(pod)
        return np.array([cpu or 100, mem or 200 * 2**20])

    def default_pick(self, pod: dict[str, Any], names: list[str]) -> str | None:
        """The default kube-scheduler's choice among `names` for a pod no extender sees:
        NodeResourcesFit LeastAllocated + NodeResourcesBalancedAllocation over cpu and
        memory, in its integer arithmetic; the first of the best in node order, as
        kube_default without a Generator (the replay draws among them)."""
        used: dict[str, np.ndarray] = {}
        for q in self.pods.values():
            node = q["spec"].get("nodeName")
            if node:
                used[node] = used.get(node, np.zeros(2, np.int64)) + self._scored(q)
        best, pick = -1, None
        for n in self.node_list:
            name = n["metadata"]["name"]
            if name not in names:
                continue
            a = n["status"]["allocatable"]
            cap = [_cpu_milli(a["cpu"]), parse_bytes(a["memory"])]
            req = used.get(name, np.zeros(2, np.int64)) + self._scored(pod)
            least = sum((c - int(r)) * 100 // c if int(r) <= c else 0 for r, c in zip(req, cap)) // 2
            f = [min(int(r) / c, 1.0) for r, c in zip(req, cap)]
            score = least + int((1 - abs(f[0] - f[1]) / 2) * 100)
            if score > best:
                best, pick = score, name
        return pick

    def fit(self, pod: dict[str, Any]) -> list[str]:
        """Nodes whose allocatable cpu, memory and nvidia.com/gpu hold the pod next to the
        pods bound there, in node order: the NodeNames kube-scheduler sends."""
        used: dict[str, np.ndarray] = {}
        for q in self.pods.values():
            node = q["spec"].get("nodeName")
            if node:
                used[node] = used.get(node, np.zeros(3, np.int64)) + self._requests(q)
        want = np.array(self._requests(pod))
        out = []
        for n in self.node_list:
            a = n["status"]["allocatable"]
            cap = np.array([_cpu_milli(a["cpu"]), parse_bytes(a["memory"]), int(a[contract.GPU_RESOURCE])])
            if (used.get(n["metadata"]["name"], 0) + want <= cap).all():
                out.append(n["metadata"]["name"])
        return out


def extender_for(ns: Nodes) -> tuple[Extender, LiveState, Kube]:
    live = LiveState(stale_after_s=600.0, clock=lambda: NOW)
    kube = Kube(node_objects(ns))
    live.set_nodes(copy.deepcopy(kube.node_list))
    live.set_pods([])
    live.pending_requests = kube.pending.requests  # as ExtenderDaemon wires them

    def binder(namespace: str, name: str, uid: str, node: str, annotations: dict[str, str], _rv: str) -> None:
        pod = kube.pods[name]
        assert (namespace, uid) == (NAMESPACE, pod["metadata"]["uid"])
        kube.bindings[name] = (node, dict(annotations))
        bound = copy.deepcopy(pod)  # the annotations patch, the Binding, then the kubelet's Running
        bound["metadata"]["annotations"].update(annotations)
        bound["spec"]["nodeName"] = node
        bound["status"] = {"phase": "Running"}
        kube.pods[name] = bound
        live.on_pod("MODIFIED", copy.deepcopy(bound))  # as the watch delivers it
        kube.pending.on_pod("DELETED", copy.deepcopy(bound))  # bound: out of the pending pods' selector

    ext = Extender(live=live, binder=binder,
                   get_pod=lambda namespace, name: copy.deepcopy(kube.pods.get(name)), clock=lambda: NOW)
    return ext, live, kube


# ---------- the lock-step replay


@dataclass
class Checked:
    gpu_pods: int = 0  # GPU pods placed by both and compared
    shares: int = 0
    whole: int = 0
    cpu_pods: int = 0
    unplaced: int = 0  # fit nowhere, in both
    ties: int = 0  # pods whose top score was shared by several nodes
    relearned: int = 0  # times both re-learned the workload's shapes
    relearned_with_pending: int = 0  # of those, with whole-GPU pods pending (fit nowhere)
    nodes_used: set[str] = field(default_factory=set)


def lockstep(policy: ours.Gpusched, ns: Nodes, ps: Pods) -> Checked:
    """Replay `ps` through the simulator (sim.replay's loop, keep_going) and the extender
    side by side; assert at every pod that they decide the same."""
    mib = gpu_mib(ns)
    ext, live, kube = extender_for(ns)
    state = State(ns)
    policy.start(state, ps, 1)
    assert len(live.snapshot()) == len(ns) and not live.snapshot().stale.any()
    seen = Checked()
    for p in ps.pods:
        where = f"pod {p.key} ({sim.describe(p)})"
        # --- the simulator
        c = state.candidates(p)
        before, shapes_before = policy.snapshot, policy.shapes
        choice = policy.choose(state, p, c)
        # --- the cluster: the pod is created, the informer sees it pending
        pod = pod_object(p, mib)
        kube.pods[p.key] = pod
        live.on_pod("ADDED", copy.deepcopy(pod))
        req = parse_pod(pod)
        if p.kind != "cpu":  # gpusched's pod: pending until bound, and stays so if it fits nowhere
            kube.pending.on_pod("ADDED", copy.deepcopy(pod))
        if p.kind != "cpu":
            sim_req = policy.requests(p)
            assert len(sim_req) == 1, where
            assert (req.whole_gpus, req.gpu_memory) == (sim_req[0].whole_gpus, sim_req[0].gpu_memory), where
        names = kube.fit(pod)
        sim_names = [n for n, ok in zip(state.names, c.resources) if ok]
        # kube-scheduler also counts nvidia.com/gpu, so it may send fewer nodes than fit CPU and memory
        assert set(names) <= set(sim_names), where
        assert names == [n for n in sim_names if n in names], where
        if p.kind == "cpu":  # the default scheduler's pod: no extender call
            choice = policies.kube_default(state, p, c)
            node = kube.default_pick(pod, names)
            assert (choice is None) == (node is None), where
            if node is None:
                seen.unplaced += 1
                continue
            assert state.names[choice[0]] == node and choice[1] == (), (
                f"{where}: kube-scheduler's default pick {node}, simulator's {state.names[choice[0]]}")
            bound = copy.deepcopy(pod)
            bound["spec"]["nodeName"] = node
            bound["status"] = {"phase": "Running"}
            kube.pods[p.key] = bound
            live.on_pod("MODIFIED", copy.deepcopy(bound))
            state.apply(p, *choice)
            policy.placed(state, p, choice)
            seen.cpu_pods += 1
            seen.nodes_used.add(node)
            continue
        body = json.dumps({"Pod": pod, "NodeNames": names}, separators=GO).encode()
        filtered = json.loads(ext.filter(body))
        feasible = filtered["NodeNames"] or []
        assert filtered["Error"] == "", where
        # --- same feasible set
        sim_feasible = policy.last[0][1] if policy.last else []
        assert feasible == sim_feasible, f"{where}: extender passes {feasible}, simulator {sim_feasible}"
        assert set(filtered["FailedNodes"]) == set(names) - set(feasible), where
        if not feasible:
            assert choice is None and not c.feasible.any(), where
            seen.unplaced += 1
            continue
        assert choice is not None, where
        # --- same integer scores on every node
        answer = json.loads(ext.prioritize(json.dumps({"Pod": pod, "NodeNames": feasible}, separators=GO).encode()))
        listed = {a["Host"]: a["Score"] for a in answer}
        # hosts in the order sent; one scoring 0 is left out, as kube-scheduler reads it
        assert [a["Host"] for a in answer] == [n for n in feasible if n in listed], where
        assert all(isinstance(s, int) and 0 < s <= 10 for s in listed.values()), where
        scores = [listed.get(n, 0) for n in feasible]
        assert len(policy.last) == 1, where
        assert scores == policy.last[0][2], (
            f"{where}: extender scores {dict(zip(feasible, scores))}, "
            f"simulator {dict(zip(sim_feasible, policy.last[0][2]))}")
        # --- kube-scheduler's pick: a node of the highest score, drawn among ties (selectHost);
        # the simulator's draw stands for it
        top = max(scores)
        node = state.names[choice[0]]
        seen.ties += scores.count(top) > 1
        assert listed.get(node, 0) == top, f"{where}: simulator's {node} scores {listed.get(node, 0)}, the top is {top}"
        bound = json.loads(ext.bind(json.dumps({"PodName": p.key, "PodNamespace": NAMESPACE,
                                                "PodUID": f"uid-{p.key}", "Node": node}).encode()))
        assert bound == {"Error": ""}, where
        got_node, annotations = kube.bindings[p.key]
        assert got_node == node, where
        # --- the GPUs the extender wrote are the simulator's
        assert annotations[contract.GPU_IDS] == ",".join(map(str, choice[1])), (
            f"{where}: extender wrote gpu-ids {annotations[contract.GPU_IDS]!r} on {node}, simulator {choice[1]}")
        placement = json.loads(annotations[contract.PLACEMENT])
        assert (placement["node"], tuple(placement["gpus"]), placement["score"]["score"]) == (node, choice[1], top)
        seen.gpu_pods += 1
        seen.shares += p.kind == "share"
        seen.whole += p.kind == "whole"
        seen.nodes_used.add(node)
        state.apply(p, *choice)
        policy.placed(state, p, choice)
        if policy.shapes is not shapes_before:  # the bench re-learned: the extender's periodic rebuild does too
            live.rebuild(now=NOW)
            assert live.shapes == policy.shapes, f"{where}: extender learned {live.shapes}, simulator {policy.shapes}"
            seen.relearned += 1
            seen.relearned_with_pending += bool(policy.pending)
        # --- both snapshots now count the same memory on the same GPUs, the bind confirmed by the watch
        snap, mine = live.snapshot(), policy.snapshot
        rows = snap.indices(list(mine.names))
        assert np.array_equal(snap.committed[rows], mine.committed), where
        assert np.array_equal(snap.exclusive[rows], mine.exclusive), where
        # and the same CPU: the pod watch's sums of every pod's request, the simulator's own
        assert np.array_equal(snap.cpu_free[rows], mine.cpu_free), where
        assert not live._assumed, where
        assert before is not mine, where
    # the same cluster after a full rebuild from the informers' caches (what a restart would see)
    live.rebuild(now=NOW)
    snap = live.snapshot()
    assert np.array_equal(snap.committed[snap.indices(list(policy.snapshot.names))], policy.snapshot.committed)
    assert np.array_equal(snap.cpu_free[snap.indices(list(policy.snapshot.names))], policy.snapshot.cpu_free)
    assert policy.snapshot.cpu_requested.any()  # the replay put CPU on nodes: the check above can fail
    return seen


def test_simulator_and_extender_decide_the_same_on_the_same_inputs():
    ns, ps = cluster(), trace()
    seen = lockstep(ours.Gpusched(shapes=DEFAULT_SHAPES), ns, ps)
    # not vacuous: most of the trace is compared, of every kind, over the whole cluster,
    # up to and past the point where pods stop fitting
    assert seen.gpu_pods >= 90, seen
    assert seen.shares >= 35 and seen.whole >= 45 and seen.cpu_pods >= 10, seen
    assert seen.unplaced >= 10, seen
    assert seen.ties >= 20, seen
    assert len(seen.nodes_used) == len(ns), seen


def test_nodes_reach_the_extender_as_the_simulator_counts_them():
    """The node agent's report, not the labels, is what the live snapshot trusts here; it
    holds the simulator's GPU count and memory, and is fresh."""
    ns = cluster()
    _, live, _ = extender_for(ns)
    snap = live.snapshot()
    sim_snap = ours.Gpusched(shapes=DEFAULT_SHAPES)
    sim_snap.start(State(ns), trace(), 1)
    rows = snap.indices(list(sim_snap.snapshot.names))
    assert (rows >= 0).all()
    assert snap.has_report[rows].all() and not snap.stale[rows].any()
    for attr in ("gpu_mem_total", "present", "healthy", "usable", "free"):
        assert np.array_equal(getattr(snap, attr)[rows], getattr(sim_snap.snapshot, attr)), attr
    mine = sim_snap.snapshot
    assert [snap.products[snap.product_code[r]] for r in rows] == [mine.products[c] for c in mine.product_code]


def test_the_bench_gpusched_row_decides_as_the_extender(monkeypatch):
    """The bench's own row, shapes learned: re-learning every 10 GPU placements here (100 in
    the bench) so that this short trace goes through many re-learnings, the first ones on
    too few pods (DEFAULT_SHAPES) and the later ones on the trace's own mix."""
    monkeypatch.setattr(ours, "RELEARN_EVERY", 10)
    ns, ps = cluster(), trace()
    policy = sim.make_policy("gpusched")
    assert isinstance(policy, ours.Gpusched) and policy.fixed_shapes is None
    seen = lockstep(policy, ns, ps)
    assert seen.relearned >= 8 and seen.gpu_pods >= 90, seen
    assert seen.relearned_with_pending >= 3, seen  # the pending pods' part of learning is compared too
    assert policy.shapes != DEFAULT_SHAPES  # learned from the trace by the end, not the defaults
