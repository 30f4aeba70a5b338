"""The replay: deterministic with a seed, and gpusched's policy is scheduler.core's decision,
the same as the extender's verbs answer on the same cluster and pods."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.placement import ours, sim
from benchmarks.placement.state import State
from benchmarks.placement.trace import MILLI, Pod, Pods
from benchmarks.testbed.profiles import ALIBABA_GPU_MIB
from scheduler import contract
from scheduler.core import DEFAULT_SHAPES
from scheduler.core.scoring import levels, untouched
from scheduler.core.assign import assign_gpus
from scheduler.nodeinfo import MiB
from tests.benchmarks.placement.tiny import nodes
from tests.scheduler.core.fixtures import filter_names, score_names

SHAPES = [(1, 1000), (1, 500), (1, 250), (1, 810), (1, 460), (2, 1000), (4, 1000), (8, 1000), (0, 0)]
WEIGHTS = [0.3, 0.15, 0.1, 0.1, 0.1, 0.07, 0.05, 0.02, 0.11]


def synthetic(n: int, seed: int, specs: tuple[str, ...] = ("",)) -> Pods:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        num, milli = SHAPES[rng.choice(len(SHAPES), p=WEIGHTS)]
        spec = specs[rng.integers(len(specs))] if num == 1 else ""  # multi-GPU pods fit the big nodes
        out.append(Pod(f"p{i:04d}", i + 2, int(rng.integers(1, 17)) * 1000, int(rng.integers(0, 65)) * 1024, num,
                       milli, frozenset(s for s in spec.split("|") if s)))
    return Pods("synthetic", tuple(out), "creation_time order", 0)


def mixed_nodes():
    return nodes(*[(64000, 262144, 2, "P100")] * 3, *[(96000, 393216, 8, "G2")] * 4,
                 *[(32000, 131072, 4, "V100M32")] * 2, *[(104000, 393216, 2, "T4")] * 4, (96000, 786432, 8, "G3"))


def test_same_seed_same_result_every_policy():
    ns, ps = mixed_nodes(), synthetic(150, seed=5, specs=("", "", "T4", "G2|G3", "V100M32|P100"))
    for name in sim.POLICY_ORDER:
        a = sim.replay(ns, ps, sim.make_policy(name), seed=7, keep_going=True)
        b = sim.replay(ns, ps, sim.make_policy(name), seed=7, keep_going=True)
        ra, rb = a.row(), b.row()
        ra.pop("runtime_s"), rb.pop("runtime_s")
        assert ra == rb and a.allocated_milli == b.allocated_milli, name
        assert json.dumps(ra)  # JSON-ready
    r1 = sim.replay(ns, ps, sim.make_policy("random"), seed=7, keep_going=True)
    r2 = sim.replay(ns, ps, sim.make_policy("random"), seed=8, keep_going=True)
    assert r1.allocated_milli != r2.allocated_milli


def test_replay_stops_at_the_first_pod_that_fits_nowhere():
    ns = nodes((32000, 65536, 2, "T4"))
    ps = Pods("t", (Pod("a", 2, 1000, 0, 1, 1000, frozenset()), Pod("b", 3, 1000, 0, 2, 1000, frozenset()),
                    Pod("c", 4, 1000, 0, 1, 500, frozenset())), "creation_time order", 0)
    r = sim.replay(ns, ps, sim.make_policy("best-fit"), seed=1)
    # a takes 1 of 2 GPUs; b needs 2: fits nowhere. allocation 1000 / 2000
    assert (r.pods_placed, r.gpu_allocation_at_first_failure, r.first_failure["pod"]) == (1, 0.5, "b")
    assert r.arrived_demand_at_first_failure == 1.5  # (1000 + 2000) / 2000
    assert r.arrived_milli == [1000, 3000] and r.allocated_milli == [1000, 1000]
    r = sim.replay(ns, ps, sim.make_policy("best-fit"), seed=1, keep_going=True)
    assert (r.pods_placed, r.pods_placed_total, r.gpu_allocation_at_end) == (1, 2, 0.75)


def _single_request(policy, pod):
    reqs = policy.requests(pod)
    assert len(reqs) == 1
    return reqs[0]


def test_gpusched_choice_is_the_top_score_of_scheduler_core():
    """Every step: the simulator's node has the highest prioritize score among the nodes
    filter_rows passes on the policy's snapshot (one of them at random, as kube-scheduler's
    selectHost draws), and its GPUs are assign_gpus's."""
    # one GPU size (G2 and G3 are both 81920 MiB), so each pod is one request
    ns = nodes(*[(96000, 393216, 8, "G2")] * 10, *[(96000, 786432, 8, "G3")] * 3)
    ps = synthetic(150, seed=3, specs=("", "", "G3"))
    state, pol = State(ns), ours.Gpusched()
    pol.start(state, ps, 1)
    assert sum(s.weight for s in pol.shapes) == pytest.approx(1)
    checked = not_first = 0
    for p in ps.pods:
        c = state.candidates(p)
        req = _single_request(pol, p)
        names = [n for n, ok in zip(state.names, c.resources) if ok]
        feasible, _ = filter_names(pol.snapshot, req, names)
        before = pol.snapshot
        choice = pol.choose(state, p, c)
        if not feasible:
            assert choice is None and not c.feasible.any()
            break
        scores, details = score_names(before, req, feasible, pol.weights, pol.shapes)
        top = max(s for _, s in scores)
        got = state.names[choice[0]]
        assert got in {n for n, s in scores if s == top}
        not_first += got != next(n for n, s in scores if s == top)
        if req.gpu_pod:
            assert choice[1] == tuple(assign_gpus(before, got, req).gpu_ids)
            checked += 1
        # the levels of the union reproduce prioritize's own scores
        assert levels(details.total, untouched(before, details.rows, pol.shapes)).tolist() == [s for _, s in scores]
        state.apply(p, *choice)
        pol.placed(state, p, choice)
    assert checked > 40
    assert not_first > 0  # ties are drawn, not broken in node order
    # the snapshot's accounting in bytes agrees with the simulator's in milli-GPUs
    snap = pol.snapshot
    used = state.present & (state.gpu_free < MILLI)
    assert np.array_equal(snap.committed > 0, used)
    assert np.array_equal(snap.exclusive, state.present & (state.gpu_free == 0) & snap.exclusive)


def test_gpusched_share_is_asked_per_gpu_size():
    ns = mixed_nodes()
    state, pol = State(ns), ours.Gpusched()
    pol.start(state, synthetic(10, seed=1), 1)
    reqs = pol.requests(Pod("x", 2, 1000, 0, 1, 460, frozenset()))
    # one request per memory size: P100 16280, T4 15360, V100M32 32510, G2/G3 81920 MiB
    got = sorted((r.gpu_memory, tuple(sorted(r.products))) for r in reqs)
    sizes = {"P100": 16280, "T4": 15360, "V100M32": 32510, "G2": 81920, "G3": 81920}
    assert [g for g, _ in got] == sorted({460 * mib * MiB // 1000 for mib in sizes.values()})
    assert got[-1][1] == tuple(sorted((ALIBABA_GPU_MIB["G2"][0], ALIBABA_GPU_MIB["G3"][0])))
    # a gpu_spec keeps only the accepted models
    reqs = pol.requests(Pod("y", 2, 1000, 0, 1, 460, frozenset({"T4", "G3"})))
    assert sorted(tuple(r.products) for r in reqs) == sorted([(ALIBABA_GPU_MIB["T4"][0],), (ALIBABA_GPU_MIB["G3"][0],)])
    whole = pol.requests(Pod("z", 2, 1000, 0, 2, 1000, frozenset({"T4"})))
    assert [(r.whole_gpus, r.gpu_memory, tuple(r.products)) for r in whole] == [(2, 0, (ALIBABA_GPU_MIB["T4"][0],))]


def test_gpusched_union_over_sizes_keeps_the_best():
    ns = mixed_nodes()
    ps = synthetic(200, seed=11)
    state, pol = State(ns), ours.Gpusched()
    pol.start(state, ps, 1)
    multi = 0
    for p in ps.pods:
        c = state.candidates(p)
        before, shapes = pol.snapshot, pol.shapes  # the bind and a re-learning change both
        choice = pol.choose(state, p, c)
        if choice is None:
            break
        if len(pol.last) > 1:
            multi += 1
            rows = np.concatenate([before.indices(f) for _, f, _, _ in pol.last])
            keep = np.concatenate([untouched(before, d.rows, shapes) for *_, d in pol.last])
            assert keep.tolist() == np.concatenate([d.untouched for *_, d in pol.last]).tolist()
            ints = levels(np.concatenate([d.total for *_, d in pol.last]), keep)
            assert ints.max() in (0, 10)  # the best gets 10, unless every candidate scores 0
            assert choice[0] in rows[ints == ints.max()]
        state.apply(p, *choice)
        pol.placed(state, p, choice)
    assert multi > 10


def _node_json(name: str, model: str, gpus: int) -> dict:
    product, mib = ALIBABA_GPU_MIB[model]
    return {"metadata": {"name": name, "labels": {contract.GPU_PRODUCT_LABEL: product,
                                                  contract.GPU_MEMORY_LABEL: str(mib)}},
            "spec": {}, "status": {"allocatable": {contract.GPU_RESOURCE: str(gpus)}}}


def _pod_json(p: Pod, req) -> dict:
    annotations = {}
    limits = {}
    if req.whole_gpus:
        limits[contract.GPU_RESOURCE] = str(req.whole_gpus)
    if req.gpu_memory:
        annotations[contract.GPU_MEMORY] = str(req.gpu_memory)
    if req.products:
        annotations[contract.GPU_PRODUCTS] = ",".join(sorted(req.products))
    return {"metadata": {"name": p.key, "namespace": "bench", "uid": f"uid-{p.key}", "annotations": annotations},
            "spec": {"schedulerName": "gpusched", "containers": [{"name": "c", "resources": {"limits": limits}}]}}


def test_simulator_decides_as_the_extender_does():
    """The same pods through the extender's filter, prioritize and bind (kube-scheduler's part played
    here: CPU/memory fit, highest score, on ties the one the simulator drew, as selectHost draws one)
    land on the same nodes and GPUs as in the simulator with the extender's shapes (DEFAULT_SHAPES)."""
    from scheduler.extender.live import LiveState
    from scheduler.extender.server import Extender

    ns = nodes(*[(96000, 393216, 8, "G2")] * 8, *[(96000, 786432, 8, "G3")] * 3)
    ps = synthetic(120, seed=9, specs=("", "G2"))
    live = LiveState(stale_after_s=3600)
    live.set_nodes([_node_json(n, m, int(g)) for n, m, g in zip(ns.names, ns.model, ns.gpus)])
    bound: dict[str, tuple[str, str]] = {}
    pods_json: dict[str, dict] = {}
    ext = Extender(live=live, binder=lambda ns_, name, uid, node, ann, _rv: bound.__setitem__(name, (node, ann.get(
        contract.GPU_IDS, ""))), get_pod=lambda ns_, name: pods_json.get(name))
    state, pol = State(ns), ours.Gpusched(shapes=DEFAULT_SHAPES)
    pol.start(state, ps, 1)
    agreed = 0
    for p in ps.pods:
        c = state.candidates(p)
        req = _single_request(pol, p)
        names = [n for n, ok in zip(state.names, c.resources) if ok]
        pod = pods_json[p.key] = _pod_json(p, req)
        body = json.dumps({"Pod": pod, "NodeNames": names}).encode()
        feasible = json.loads(ext.filter(body))["NodeNames"] or []
        choice = pol.choose(state, p, c)
        if not feasible:
            assert choice is None
            break
        listed = {a["Host"]: a["Score"] for a in
                  json.loads(ext.prioritize(json.dumps({"Pod": pod, "NodeNames": feasible}).encode()))}
        scores = [listed.get(n, 0) for n in feasible]  # a host left out scored 0
        assert scores == pol.last[0][2]  # same scores, same order
        node = state.names[choice[0]]
        assert listed.get(node, 0) == max(scores)
        answer = json.loads(ext.bind(json.dumps({"PodName": p.key, "PodNamespace": "bench", "PodUID": f"uid-{p.key}",
                                                 "Node": node}).encode()))
        assert answer["Error"] == ""
        if req.gpu_pod:
            assert ",".join(map(str, choice[1])) == bound[p.key][1]
            agreed += 1
        state.apply(p, *choice)
        pol.placed(state, p, choice)
    assert agreed > 30


def test_gpusched_ties_are_drawn_with_the_seed():
    """The same seed places alike; another seed draws other nodes among equal scores."""
    ns = nodes(*[(96000, 393216, 8, "G2")] * 12)

    def placed(seed: int) -> list[int]:
        state, pol = State(ns), ours.Gpusched()
        ps = synthetic(40, seed=5)
        pol.start(state, ps, seed)
        out = []
        for p in ps.pods:
            choice = pol.choose(state, p, state.candidates(p))
            if choice is None:
                break
            state.apply(p, *choice)
            pol.placed(state, p, choice)
            out.append(choice[0])
        return out

    assert placed(1) == placed(1)
    assert placed(1) != placed(2)
