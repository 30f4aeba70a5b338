from __future__ import annotations

import fnmatch
import math

import numpy as np
import pytest

from scheduler.core import PodRequest, Weights
from scheduler.core.scoring import (DEFAULT_SHAPES, Shape, fragmentation_delta, levels, locality, normalize,
                                    packing, simulate, untouched)
from tests.scheduler.core.fixtures import GiB, NOW, filter_names, node, score_names, share, snapshot, whole

M = "meta-llama/Llama-3.1-8B-Instruct"


def rows(s, *names):
    return s.indices(list(names))


@pytest.mark.parametrize("tier,nbytes,want_frac,want_s", [
    # remote 16 GiB / 0.5 GB/s = 34.36 s; disk 16 GiB / 2 GB/s = 8.59 s: 25.77 s avoided = 75%
    ("disk", 16 * GiB, 0.75, 25.77),
    # host memory at 20 GB/s: 0.86 s; 34.36 - 0.86 = 33.50 s = 97.5%
    ("host-memory", 16 * GiB, 0.975, 33.50),
    # already in GPU memory: the whole remote load, 140 GiB / 0.5 GB/s = 300.6 s
    ("gpu", 140 * GiB, 1.0, 300.65),
])
def test_locality_weighs_load_time_avoided(tier, nbytes, want_frac, want_s):
    s = snapshot(node("cached", models={M: (nbytes, tier)}), node("cold"))
    frac, secs = locality(s, PodRequest(whole_gpus=1, model=M), rows(s, "cached", "cold"), Weights())
    assert frac == pytest.approx([want_frac, 0.0], abs=1e-3)
    assert secs == pytest.approx([want_s, 0.0], abs=0.01)


@pytest.mark.parametrize("used_a,req,want_a_gt_b", [
    # 40 GiB share: A's GPU 0 holds 40 (40 free, filled exactly: gpu fill 1.0), B is empty (fill 0.5)
    ({0: 40}, PodRequest(gpu_memory=40 * GiB), True),
    # 1 whole GPU: A has 1 of 8 GPUs busy -> 2/8 after; B 1/8 after
    ({0: 80}, PodRequest(whole_gpus=1), True),
])
def test_packing_prefers_the_fuller_node(used_a, req, want_a_gt_b):
    allocs = [share(f"p{g}", g, gib) for g, gib in used_a.items()]
    s = snapshot(node("a", allocs=allocs), node("b"))
    r = rows(s, "a", "b")
    p = packing(s, req, r, simulate(s, req, r))
    assert (p[0] > p[1]) == want_a_gt_b, p


def test_spread_inverts_packing():
    s = snapshot(node("a", allocs=[share("p", 0, 40)]), node("b"))
    req = PodRequest(gpu_memory=20 * GiB)
    packed = dict(score_names(s, req, ["a", "b"], Weights(packing=1, fragmentation=0, locality=0))[0])
    spread = dict(score_names(s, req, ["a", "b"], Weights(packing=1, fragmentation=0, locality=0, policy="spread"))[0])
    assert packed["a"] > packed["b"] and spread["b"] > spread["a"]


def _frag_bruteforce(free, whole_free, total, shapes, cpu_free, product="", ram_free=None):
    """FGD's expected fragmentation recomputed from scratch, node by node: a shape the node's
    free CPU or memory cannot host one pod of, or pinned to products the node's is not,
    finds all of the node's free memory a fragment. For a k-GPU shape, also every untouched
    GPU the node's CPU and memory cannot feed (`hosted` pods of k GPUs, unrounded), once
    they feed fewer pods than the untouched GPUs would take. (Its GPUs are of one size, as
    the random snapshots' are: their mean before and after a placement is the same.)"""
    tw = sum(sh.weight for sh in shapes)
    out = np.zeros(free.shape[0])
    for i in range(free.shape[0]):
        for sh in shapes:
            everything = free[i].sum()
            hosted = min(cpu_free[i] / sh.cpu_milli if sh.cpu_milli else 1e9,
                         ram_free[i] / sh.ram if ram_free is not None and sh.ram else 1e9)
            if sh.products and not any(fnmatch.fnmatchcase(product, q) for q in sh.products):
                hosted = 0
            if sh.whole:
                untouched = int(whole_free[i].sum())
                partial = free[i][~whole_free[i]].sum()
                fits = untouched // sh.whole
                if min(fits, math.floor(hosted)) < 1:
                    f = everything
                elif math.floor(hosted) >= fits:
                    f = partial
                else:  # e.g. 8 untouched, CPU for 2.5 pods of 2: 1.5 pods, 3 GPUs unfed
                    f = partial + (fits - hosted) * sh.whole * free[i][whole_free[i]].mean()
            else:
                f = np.where(free[i] < sh.fraction * total[i], free[i], 0).sum() if hosted >= 1 else everything
            out[i] += sh.weight / tw * f
    return out


# DEFAULT_SHAPES, each at three CPU levels: 0, 8 and 24 cores
CPU_SHAPES = tuple(Shape(sh.whole, sh.fraction, sh.weight / 3, cpu) for sh in DEFAULT_SHAPES
                   for cpu in (0, 8000, 24000))
# CPU_SHAPES, each also at three memory levels: 0, 64 and 256 GiB
HOST_SHAPES = tuple(Shape(sh.whole, sh.fraction, sh.weight / 3, sh.cpu_milli, ram=ram) for sh in CPU_SHAPES
                    for ram in (0, 64 * GiB, 256 * GiB))


PRODUCTS = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S")
# CPU_SHAPES, and besides each a copy pinned to H100s and one pinned to A100s (a glob) or L40Ss
PINNED_SHAPES = tuple(Shape(sh.whole, sh.fraction, sh.weight / 3, sh.cpu_milli, pin) for sh in CPU_SHAPES
                      for pin in (frozenset(), frozenset(PRODUCTS[:1]), frozenset({"NVIDIA-A100-*", PRODUCTS[2]})))


def _random_snapshot(rng: np.random.Generator, with_cpu: bool, products: tuple[str, ...] = PRODUCTS[:1],
                     with_ram: bool = False):
    """30 nodes of 8 GPUs: each GPU 30% a share of 5-60 GiB, 15% whole, else free; with CPU,
    0 (not known: CPU limits nothing), 64 or 96 cores with up to 80 requested; with memory,
    0 (not known), 512 or 1024 GiB with up to 900 requested; each node one of ``products``."""
    nodes = []
    for i in range(30):
        allocs = []
        for g in range(8):
            r = rng.random()
            if r < 0.3:
                allocs.append(share(f"s{i}-{g}", g, int(rng.integers(5, 60))))
            elif r < 0.45:
                allocs.append(whole(f"w{i}-{g}", g))
        product = str(rng.choice(products))
        if not with_cpu:
            nodes.append(node(f"n{i}", allocs=allocs, product=product))
            continue
        cpu = int(rng.choice([0, 64, 96]))
        ram = int(rng.choice([0, 512, 1024])) if with_ram else 0
        nodes.append(node(f"n{i}", allocs=allocs, cpu=cpu, cpu_used=int(rng.integers(0, 80)) if cpu else 0,
                          product=product, ram_gib=ram, ram_used_gib=int(rng.integers(0, 900)) if ram else 0))
    return snapshot(*nodes)


def _recomputed_deltas(s, req: PodRequest, feasible: list[str], shapes) -> list[float]:
    """What fragmentation_delta must give on each feasible node: FGD's F recomputed from
    scratch after the pod is placed there (its GPUs as bind assigns them, its CPU requested),
    less F before. A node whose CPU (memory) is not known has CPU_UNKNOWN (RAM_UNKNOWN) free
    before and after."""
    from scheduler.core import assign_gpus
    from scheduler.core.snapshot import Allocation
    want = []
    for name in feasible:
        a = assign_gpus(s, name, req)
        i = s.index[name]
        after = s.with_allocation(name, Allocation("new", a.gpu_ids, a.memory_per_gpu, bool(req.whole_gpus),
                                                   len(a.gpu_ids)))
        after = after.with_requested({name: (int(s.cpu_requested[i]) + req.cpu_milli,
                                             int(s.ram_requested[i]) + req.ram)})
        product = s.products[s.product_code[i]]
        b = _frag_bruteforce(s.free[i:i + 1], s.whole_free[i:i + 1], s.gpu_mem_total[i:i + 1], shapes,
                             s.cpu_free[i:i + 1], product, s.ram_free[i:i + 1])
        aa = _frag_bruteforce(after.free[i:i + 1], after.whole_free[i:i + 1], after.gpu_mem_total[i:i + 1],
                              shapes, after.cpu_free[i:i + 1], product, after.ram_free[i:i + 1])
        want.append((aa - b)[0])
    return want


# Each case: the nodes (CPU only; CPU and memory; three products), the shapes fragmentation
# is measured for, and pods whose CPU, memory or products make some shapes unfit where they fitted.
RECOMPUTE_CASES = {
    # 16..64 free cores, shapes asking 0, 8 or 24
    "cpu": ({}, CPU_SHAPES, [PodRequest(gpu_memory=20 * GiB, cpu_milli=6000),
                             PodRequest(gpu_memory=50 * GiB, cpu_milli=16000), PodRequest(whole_gpus=1, cpu_milli=12000),
                             PodRequest(whole_gpus=3, cpu_milli=30000), PodRequest(whole_gpus=2)]),
    # 0, 512 or 1024 GiB of memory with up to 900 requested, shapes asking 0, 64 or 256 GiB
    "memory": ({"with_ram": True}, HOST_SHAPES,
               [PodRequest(gpu_memory=20 * GiB, cpu_milli=6000, ram=32 * GiB), PodRequest(gpu_memory=50 * GiB, ram=200 * GiB),
                PodRequest(whole_gpus=1, ram=100 * GiB), PodRequest(whole_gpus=3, cpu_milli=30000, ram=300 * GiB),
                PodRequest(whole_gpus=2)]),
    # three products, shapes pinned to some: a node a pinned shape cannot use has all its free
    # memory fragmented for it, before and after
    "pinned": ({"products": PRODUCTS}, PINNED_SHAPES,
               [PodRequest(gpu_memory=20 * GiB, cpu_milli=6000), PodRequest(whole_gpus=1),
                PodRequest(whole_gpus=3, cpu_milli=30000),
                PodRequest(gpu_memory=30 * GiB, products=frozenset(PRODUCTS[1:]))]),
}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("case,req", [(c, r) for c, (_, _, reqs) in RECOMPUTE_CASES.items() for r in reqs])
def test_fragmentation_delta_with_node_limits_equals_recomputing_everything(seed, case, req):
    """The delta must be what recomputing F after the placement says, on every feasible node."""
    kw, shapes, _ = RECOMPUTE_CASES[case]
    s = _random_snapshot(np.random.default_rng(seed), with_cpu=True, **kw)
    feasible, _ = filter_names(s, req, list(s.names))
    r = s.indices(feasible)
    got = fragmentation_delta(s, req, r, simulate(s, req, r), shapes)
    assert got == pytest.approx(_recomputed_deltas(s, req, feasible, shapes), rel=1e-9, abs=1.0)
    assert len(set(np.round(got, -3))) > 3  # not a degenerate draw: the rows differ


@pytest.mark.parametrize("pinned_weight, want", [
    # one 1-GPU shape free to go anywhere (weight 1) and one pinned to H100s (weight w), 8 x 80 GiB
    # nodes, a 20 GiB share on an untouched GPU: for the free shape the GPU's 60 GiB left is a
    # fragment of whole-GPU demand on both nodes (+60 GiB x 1 / (1 + w)). For the pinned shape,
    # on the H100 the same +60 x w / (1 + w); on the A100 all of its free memory was a fragment
    # and still is, less the 20 placed: -20 x w / (1 + w).
    # w = 0 (no pin learned): +60 on both, the same score.
    (0.0, (60.0, 60.0)),
    # w = 1: H100 (60 + 60) / 2 = 60; A100 (60 - 20) / 2 = 20: the pod keeps off the GPUs pinned pods need
    (1.0, (60.0, 20.0)),
    # w = 3: H100 60; A100 (60 - 3 x 20) / 4 = 0
    (3.0, (60.0, 0.0)),
])
def test_a_pinned_shape_steers_other_pods_off_its_products(pinned_weight, want):
    s = snapshot(node("h100", product=PRODUCTS[0]), node("a100", product=PRODUCTS[1]))
    shapes = (Shape(whole=1, weight=1.0), Shape(whole=1, weight=pinned_weight, products=frozenset(PRODUCTS[:1])))
    req = PodRequest(gpu_memory=20 * GiB)
    r = rows(s, "h100", "a100")
    got = fragmentation_delta(s, req, r, simulate(s, req, r), shapes) / GiB
    assert got == pytest.approx(want)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("req", [PodRequest(gpu_memory=20 * GiB), PodRequest(gpu_memory=50 * GiB),
                                 PodRequest(whole_gpus=1), PodRequest(whole_gpus=3)])
def test_fragmentation_delta_equals_recomputing_everything(seed, req):
    s = _random_snapshot(np.random.default_rng(seed), with_cpu=False)
    feasible, _ = filter_names(s, req, list(s.names))
    r = s.indices(feasible)
    got = fragmentation_delta(s, req, r, simulate(s, req, r), DEFAULT_SHAPES)
    assert got == pytest.approx(_recomputed_deltas(s, req, feasible, DEFAULT_SHAPES), rel=1e-9, abs=1.0)


def test_fragmentation_prefers_filling_a_hole_over_breaking_a_whole_gpu():
    # a 30 GiB share: on A it fills GPU 0's 30 GiB hole exactly (a fragment for whole-GPU
    # shapes disappears); on B it breaks an untouched GPU (80 GiB leave the whole-GPU pool)
    s = snapshot(node("a", allocs=[share("p", 0, 50)]), node("b"))
    scores = dict(score_names(s, PodRequest(gpu_memory=30 * GiB), ["a", "b"], Weights(packing=0, locality=0))[0])
    assert scores["a"] == 10 and scores["b"] < scores["a"]


def test_a_cached_node_with_room_beats_a_fuller_node():
    cached = node("cached", models={M: (16 * GiB, "disk")})
    full = node("full", allocs=[whole(f"w{g}", g) for g in range(6)])
    s = snapshot(cached, full)
    scores, details = score_names(s, PodRequest(whole_gpus=1, model=M), ["cached", "full"])
    assert dict(scores) == {"cached": 10, "full": pytest.approx(dict(scores)["full"])}
    assert dict(scores)["full"] < 10
    assert details.get("cached")["loadSecondsAvoided"] == pytest.approx(25.8, abs=0.1)


def test_non_gpu_pods_and_unknown_nodes_score_zero():
    s = snapshot(node("a"))
    assert score_names(s, PodRequest(), ["a"])[0] == [("a", 0)]
    assert dict(score_names(s, PodRequest(whole_gpus=1), ["a", "ghost"])[0])["ghost"] == 0


@pytest.mark.parametrize("kw,msg", [
    ({"packing": -1}, "weight packing must be a number >= 0"),
    ({"packing": 0, "fragmentation": 0, "locality": 0, "balance": 0}, "at least one weight"),
    ({"balance": -0.1}, "weight balance must be a number >= 0"),
    ({"policy": "random"}, "policy must be"),
    ({"bandwidth_disk": 0}, "bandwidth_disk must be a positive"),
])
def test_bad_weights(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Weights(**kw)


def test_5000_nodes_score_every_candidate_once():
    s = snapshot(*[node(f"n{i}", allocs=[share(f"p{i}", i % 8, 10)]) for i in range(5000)])
    names = list(s.names)
    scores, details = score_names(s, PodRequest(gpu_memory=20 * GiB), names)
    assert [n for n, _ in scores] == names
    assert all(0 <= v <= 10 for _, v in scores) and max(v for _, v in scores) == 10
    assert details.get("n7")["score"] == dict(scores)["n7"]
    assert s.now == NOW


def test_details_are_looked_up_by_the_node_s_row():
    s = snapshot(node("a", models={M: (80 * GiB, "disk")}), node("b"), node("c"))
    scores, details = score_names(s, PodRequest(gpu_memory=20 * GiB, model=M), ["c", "ghost", "a"])
    for n in ("a", "c"):
        assert details.get(n)["score"] == dict(scores)[n]
    assert details.get("a")["locality"] > 0 and details.get("c")["locality"] == 0  # a caches the model
    assert details.get("ghost") == {}  # not in the snapshot: nothing to say (and it cannot be bound)
    assert details.get("b") == {}  # in the snapshot, not a candidate


def _pods(n: int, make) -> list:
    return [make(i) for i in range(n)]


@pytest.mark.parametrize("allocs_a, allocs_b, want", [
    # too few GPU pods to say anything: the defaults
    ([share("s0", 0, 20)], [], DEFAULT_SHAPES),
    # 15 x 20 GiB shares of 80 GiB GPUs (0.25) and 5 x 2 whole GPUs: 15/20 and 5/20
    (_pods(15, lambda i: share(f"s{i}", i % 8, 20)), _pods(5, lambda i: whole(f"w{i}", 2 * (i % 4), 2 * (i % 4) + 1)),
     (Shape(fraction=0.25, weight=0.75), Shape(whole=2, weight=0.25))),
    # 10 x 40 GiB (0.5) on one node, 10 x 1 GPU on the other
    (_pods(10, lambda i: share(f"h{i}", i % 8, 40)), _pods(10, lambda i: whole(f"o{i}", i % 8)),
     (Shape(fraction=0.5, weight=0.5), Shape(whole=1, weight=0.5))),
])
def test_workload_shapes_are_learned_from_the_pods_the_cluster_runs(allocs_a, allocs_b, want):
    from scheduler.core import workload_shapes

    s = snapshot(node("a", allocs=allocs_a), node("b", allocs=allocs_b))
    got = workload_shapes(s)
    assert [(g.whole, g.fraction) for g in got] == [(w.whole, w.fraction) for w in want]
    assert [g.weight for g in got] == pytest.approx([w.weight for w in want])


def test_workload_shapes_keep_the_commonest_and_reweigh_them():
    from scheduler.core import workload_shapes

    # 9 distinct share sizes (1..9 GiB of 80: 0.013, 0.025, ...): 9 x 3 pods, plus 9 more of 5 GiB
    allocs = [share(f"p{k}-{i}", 0, k) for k in range(1, 10) for i in range(3)] + \
             [share(f"x{i}", 1, 5) for i in range(9)]
    s = snapshot(node("a", allocs=allocs))
    got = workload_shapes(s, limit=2)
    # 5 GiB: 12 pods; then the smallest of the 3-pod sizes, 1 GiB (ties broken by shape): 12/15, 3/15
    assert [(g.fraction, round(g.weight, 3)) for g in got] == [(0.013, 0.2), (0.062, 0.8)]


@pytest.mark.parametrize("weights,want", [
    # One whole GPU; the workload asks single whole GPUs only, so it fragments nothing on
    # either node: fragmentation 0.5 on both. packing = GPUs in use after: a 5/8 = .625,
    # b 2/8 = .25; balance = 1 - packing: a .375, b .75.
    # balance .2: a .5 + .2 x .375 = .575, b .5 + .2 x .75 = .65 -> b 10, a rint(10 x .575/.65) = 9
    (Weights(balance=0.2), {"a": 9, "b": 10}),
    # balance 0 (the default, now that CPU is counted): .5 and .5 -> a tie, 10 and 10
    # (kube-scheduler's selectHost then draws one)
    (Weights(), {"a": 10, "b": 10}),
    # packing 1, balance 0: a .5 + .625 = 1.125 -> 10, b .5 + .25 = .75 -> rint(6.67) = 7
    (Weights(packing=1, balance=0), {"a": 10, "b": 7}),
])
def test_balance_prefers_the_emptier_of_nodes_that_fragment_alike(weights, want):
    s = snapshot(node("a", allocs=[whole(f"w{g}", g) for g in range(4)]), node("b", allocs=[whole("w", 0)]))
    scores, details = score_names(s, PodRequest(whole_gpus=1), ["a", "b"], weights, (Shape(whole=1),))
    assert dict(scores) == want
    assert details.fragmentation.tolist() == [0.5, 0.5]
    assert details.total == pytest.approx([0.5 + weights.packing * 0.625 + weights.balance * 0.375,
                                           0.5 + weights.packing * 0.25 + weights.balance * 0.75])


def test_workload_shapes_keep_rare_multi_gpu_shapes():
    from scheduler.core import workload_shapes

    # 6 share sizes x 5 pods (5..30 GiB of 80), 20 single GPUs, and one pod of 4 whole GPUs:
    # by count alone limit 4 keeps 1 GPU (20) and three 5-pod sizes; the 4-GPU shape, 1 pod,
    # takes a slot first (up to limit // 2 = 2 go to multi-GPU shapes), then 1 GPU and
    # the two smallest 5-pod sizes: weights 1, 20, 5, 5 of 31
    allocs = [share(f"p{k}-{i}", k % 8, 5 * k) for k in range(1, 7) for i in range(5)]
    wholes = [whole(f"w{i}", i % 4) for i in range(20)] + [whole("big", 4, 5, 6, 7)]
    s = snapshot(node("a", allocs=allocs), node("b", allocs=wholes))
    got = workload_shapes(s, limit=4)
    assert [(g.whole, g.fraction, round(g.weight * 31)) for g in got] == [
        (0, 0.062, 5), (0, 0.125, 5), (1, 0.0, 20), (4, 0.0, 1)]


# ---------- CPU in the learned shapes and the fragmentation they measure


@pytest.mark.parametrize("asks,levels,want", [
    # 44 8-GPU pods: 21 ask 64 cores, 18 ask 88, 5 ask 120; thirds of 15, 15, 14 at their most:
    # 15 x 64 -> 64; 6 x 64 + 9 x 88 -> 88; 9 x 88 + 5 x 120 -> 120 (memory 0 throughout)
    ([(64, 0)] * 21 + [(88, 0)] * 18 + [(120, 0)] * 5, 3, [(64, 0, 15), (88, 0, 15), (120, 0, 14)]),
    ([(11, 0)] * 9, 3, [(11, 0, 9)]),                    # one level: thirds merged
    ([(4, 0), (24, 0)], 3, [(4, 0, 1), (24, 0, 1)]),     # fewer pods than levels
    ([], 3, []),
    # memory rides with CPU: 6 pods sorted by CPU then memory, halves of 3 at the most of each:
    # (8, 700), (8, 720), (16, 600) -> (16, 720); (64, 625), (64, 640), (96, 500) -> (96, 640)
    ([(96, 500), (8, 700), (64, 625), (16, 600), (8, 720), (64, 640)], 2, [(16, 720, 3), (96, 640, 3)]),
])
def test_host_levels_cut_pods_into_equal_groups_at_their_most(asks, levels, want):
    from scheduler.core.scoring import host_levels
    assert host_levels(asks, levels) == want


def test_workload_shapes_carry_the_cpu_and_memory_their_pods_asked():
    from scheduler.core import workload_shapes
    from scheduler.core.snapshot import Allocation
    allocs_a = [Allocation(f"w{g}", (g,), 0, whole=True, cpu_milli=12_000, ram=(60 + 10 * g) * GiB) for g in range(3)]
    allocs_b = [Allocation("big", tuple(range(8)), 0, whole=True, count=8, cpu_milli=120_000, ram=700 * GiB)]
    s = snapshot(node("a", allocs=allocs_a), node("b", allocs=allocs_b))
    # 4 pods: three 1-GPU at 12 cores and 60, 70, 80 GiB (a level each, 1/4 each: how many a
    # node feeds depends on what they ask), one 8-GPU at 120 cores and 700 GiB (1/4)
    assert workload_shapes(s, min_pods=1) == (Shape(whole=1, weight=0.25, cpu_milli=12_000, ram=60 * GiB),
                                              Shape(whole=1, weight=0.25, cpu_milli=12_000, ram=70 * GiB),
                                              Shape(whole=1, weight=0.25, cpu_milli=12_000, ram=80 * GiB),
                                              Shape(whole=8, weight=0.25, cpu_milli=120_000, ram=700 * GiB))


def _asks(n: int, **kw) -> list[PodRequest]:
    return [PodRequest(**kw)] * n


A100 = "NVIDIA-A100-SXM4-80GB"


@pytest.mark.parametrize("placed, pending, want", [
    # 20 1-GPU pods placed, none pending: one shape
    (20, [], [(1, 0, 1.0, [])]),
    # and 5 pending 8-GPU pods at 64 cores, which found no node: 20/25 and 5/25, at their CPU
    (20, _asks(5, whole_gpus=8, cpu_milli=64_000), [(1, 0, 0.8, []), (8, 64_000, 0.2, [])]),
    # pinned to the A100s the cluster has: a pinned shape of their own
    (20, _asks(5, whole_gpus=8, products=frozenset({"NVIDIA-A100*"})), [(1, 0, 0.8, []), (8, 0, 0.2, [A100])]),
    # pods no node here could ever run are left out: pinned to products the cluster lacks (an
    # H200 pool not there yet), or more GPUs than any node has
    (20, _asks(5, whole_gpus=8, products=frozenset({"NVIDIA-H200*"})), [(1, 0, 1.0, [])]),
    (20, _asks(5, whole_gpus=16), [(1, 0, 1.0, [])]),
    # or more CPU or memory than any node has (a: 96 cores, 1 TiB; b: 64 cores, 512 GiB)
    (20, _asks(5, whole_gpus=8, cpu_milli=97_000), [(1, 0, 1.0, [])]),
    (20, _asks(5, whole_gpus=8, ram=1025 * GiB), [(1, 0, 1.0, [])]),
    (20, _asks(5, whole_gpus=8, cpu_milli=96_000), [(1, 0, 0.8, []), (8, 96_000, 0.2, [])]),
    # a pending share is left out: its fraction is of a GPU it has not been given
    (20, _asks(5, gpu_memory=20 * GiB), [(1, 0, 1.0, [])]),
    # pending pods count towards the pods needed to learn at all: 10 + 10 of LEARN_MIN_PODS 20
    (10, _asks(10, whole_gpus=1), [(1, 0, 1.0, [])]),
    (10, _asks(9, whole_gpus=1), [(s.whole, s.cpu_milli, s.weight, []) for s in DEFAULT_SHAPES]),
])
def test_workload_shapes_learn_from_whole_gpu_pods_still_pending(placed, pending, want):
    from scheduler.core import workload_shapes

    s = snapshot(node("a", allocs=_pods(placed, lambda i: whole(f"w{i}", i % 8)), cpu=96, ram_gib=1024),
                 node("b", product=A100, cpu=64, ram_gib=512))
    got = workload_shapes(s, pending=pending)
    assert [(g.whole, g.cpu_milli, round(g.weight, 6), sorted(g.products)) for g in got] == want


def test_a_node_whose_cpu_is_not_known_limits_no_pending_pod():
    from scheduler.core import workload_shapes

    # a offers 96 cores; b's CPU is not known: a pod asking 97 might fit there
    s = snapshot(node("a", allocs=_pods(20, lambda i: whole(f"w{i}", i % 8)), cpu=96), node("b"))
    got = workload_shapes(s, pending=_asks(5, whole_gpus=8, cpu_milli=97_000))
    assert [(g.whole, g.cpu_milli, round(g.weight, 6)) for g in got] == [(1, 0, 0.8), (8, 97_000, 0.2)]


def test_a_pending_pods_pin_is_read_for_the_first_max_pending_pins_pins_only():
    """A pin costs a match against every product per re-learning; a tenant's pending pods,
    each with a pin of its own, pay for MAX_PENDING_PINS of them, not for all."""
    from scheduler.core import workload_shapes
    from scheduler.core.scoring import MAX_PENDING_PINS

    s = snapshot(node("a", allocs=_pods(20, lambda i: whole(f"w{i}", i % 8))), node("b", product=A100))
    # 40 distinct pins, each accepting the A100s (and a product no node has): one resolved pin
    pending = [PodRequest(whole_gpus=8, products=frozenset({A100, f"NVIDIA-X{i}"})) for i in range(40)]
    got = workload_shapes(s, pending=pending)
    n = MAX_PENDING_PINS  # 32 of the 40 read: 20 placed + 32 pending
    assert [(g.whole, sorted(g.products), round(g.weight, 6)) for g in got] == [
        (1, [], round(20 / (20 + n), 6)), (8, [A100], round(n / (20 + n), 6))]


@pytest.mark.parametrize("ram_free_gib, want", [
    # three untouched 8 x 80 GiB nodes and one learned shape, 1 GPU asking 700 GiB of memory; a
    # 1-GPU pod asking 100 GiB, F in GiB:
    # "big", 800 free: 800 / 700 = 1.14 pods for 8 untouched GPUs, 6.86 GPUs unfed (548.6); after,
    # 700 free: 1 pod for 7 GPUs, 6 unfed (480): -68.6, the pod took a GPU no such pod could use;
    # "small", 750 free: 1.07 pods, 6.93 unfed (554.3); after, 650 free: no host, all 560: +5.7;
    # "full", 600 free: no host either way, all its free GPU memory fragmented: 640 -> 560, -80.
    ((800, 750, 600), (-480 / 7, 40 / 7, -80.0)),
    # memory not known (0 allocatable) limits nothing: every GPU fed, 0 -> 0
    ((None, 750, 600), (0.0, 40 / 7, -80.0)),
])
def test_memory_makes_a_node_no_host_for_a_shape(ram_free_gib, want):
    nodes = [node(n, ram_gib=0 if f is None else 1024, ram_used_gib=0 if f is None else 1024 - f)
             for n, f in zip(("big", "small", "full"), ram_free_gib)]
    s = snapshot(*nodes)
    shapes = (Shape(whole=1, weight=1.0, ram=700 * GiB),)
    req = PodRequest(whole_gpus=1, ram=100 * GiB)
    r = rows(s, "big", "small", "full")
    assert (fragmentation_delta(s, req, r, simulate(s, req, r), shapes) / GiB).tolist() == pytest.approx(want)


def test_workload_shapes_keep_pinned_pods_apart():
    """Pods pinned to GPU products are shapes of their own: fragmentation then counts every
    node of another product as unusable for them (FGD's classes carry the GPU model)."""
    from scheduler.core import workload_shapes
    from scheduler.core.snapshot import Allocation
    h100 = frozenset({"NVIDIA-H100-80GB-HBM3"})
    allocs = [Allocation(f"f{g}", (g,), 0, whole=True) for g in range(6)] + \
             [Allocation(f"p{g}", (g,), 0, whole=True, products=h100) for g in range(6, 8)]
    s = snapshot(node("a", allocs=allocs), node("b", product="NVIDIA-L40S"))
    # 8 one-GPU pods: 6 free to go anywhere (6/8), 2 pinned to H100s (2/8)
    assert workload_shapes(s, min_pods=1) == (Shape(whole=1, weight=0.75), Shape(whole=1, weight=0.25, products=h100))


@pytest.mark.parametrize("pin, want", [
    # the cluster has H100s, A100s and L40Ss
    (frozenset(), frozenset()),
    ({"NVIDIA-H100-80GB-HBM3"}, {"NVIDIA-H100-80GB-HBM3"}),
    # a glob and the names it matches are one shape
    ({"NVIDIA-A100-*", "NVIDIA-H100-*"}, {"NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"}),
    # every product the cluster has: no pin at all
    ({"NVIDIA-*"}, frozenset()),
    # none of them (a product gone from the cluster): tells nothing of where else it could run
    ({"NVIDIA-B200"}, frozenset()),
])
def test_resolve_pin_names_the_clusters_products_a_pin_accepts(pin, want):
    from scheduler.core.scoring import resolve_pin
    s = snapshot(*(node(f"n{i}", product=p) for i, p in enumerate(PRODUCTS)))
    assert resolve_pin(s, frozenset(pin)) == frozenset(want)


def test_pins_a_tenant_invents_learn_no_shape_of_their_own():
    """200 running pods, each pinned to a pattern no product matches: all one unpinned shape,
    not 200 pinned ones crowding out the workload's real shapes."""
    from scheduler.core import workload_shapes
    from scheduler.core.snapshot import Allocation
    allocs = [Allocation(f"p{i}", (i % 8,), 0, whole=True, products=frozenset({f"EVIL-{i}-*", "x" * 128}))
              for i in range(200)]
    s = snapshot(node("a", allocs=allocs[:100], product=PRODUCTS[0]), node("b", allocs=allocs[100:],
                                                                           product=PRODUCTS[1]))
    assert workload_shapes(s) == (Shape(whole=1, weight=1.0),)


def test_pins_naming_the_same_products_are_one_learned_shape():
    from scheduler.core import workload_shapes
    from scheduler.core.snapshot import Allocation
    pins = ({"NVIDIA-A100-*"}, {"NVIDIA-A100-SXM4-80GB"}, {"NVIDIA-A100-SXM4-80GB", "NVIDIA-B200"})
    allocs = [Allocation(f"p{g}", (g,), 0, whole=True, products=frozenset(pins[g % 3])) for g in range(6)]
    s = snapshot(node("a", allocs=allocs, product=PRODUCTS[1]), node("b", product=PRODUCTS[0]))
    assert workload_shapes(s, min_pods=1) == (Shape(whole=1, weight=1.0, products=frozenset(PRODUCTS[1:2])),)


EIGHT_AT_120 = (Shape(whole=8, cpu_milli=120_000),)
ONE_AT_16 = (Shape(whole=1, cpu_milli=16_000),)


@pytest.mark.parametrize("busy,cpu_free,req,shapes,want_gib", [
    # untouched, 128 cores free: 8 GPUs at 120 fit (F 0); a 1-GPU 8-core pod leaves 7 < 8: F = 7 x 80
    (0, 128, PodRequest(whole_gpus=1, cpu_milli=8_000), EIGHT_AT_120, +560),
    # untouched but 96 cores: the shape never fits (F = all 640 free); after, 560: -80, the GPU taken
    (0, 96, PodRequest(whole_gpus=1, cpu_milli=8_000), EIGHT_AT_120, -80),
    # a 40 GiB share on an untouched 128-core node: 7 whole GPUs left, F 0 -> 7 x 80 + 40 = 600
    (0, 128, PodRequest(gpu_memory=40 * GiB, cpu_milli=4_000), EIGHT_AT_120, +600),
    # 6 GPUs busy, 24 cores free, shape 1 GPU at 16 cores: 24 / 16 = 1.5 pods for 2 untouched
    # GPUs, so half of one is unfed (F 0.5 x 80 = 40). A 1-GPU 4-core pod takes one and leaves 20
    # cores, 1.25 pods for the last GPU: F 0, -40 (it used a GPU the CPU could not feed)
    (6, 24, PodRequest(whole_gpus=1, cpu_milli=4_000), ONE_AT_16, -40),
    # the same pod asking 12 cores leaves 12 < 16: the last GPU is stranded, F 40 -> 80: penalised
    (6, 24, PodRequest(whole_gpus=1, cpu_milli=12_000), ONE_AT_16, +40),
    # CPU not known (0 allocatable): CPU limits nothing, as before it was read: F 0 -> 0
    (6, None, PodRequest(whole_gpus=1, cpu_milli=12_000), ONE_AT_16, 0),
    # a 40 GiB share with 12 cores on that node: F 40 before; after, 12 cores host no pod of the
    # shape, so all the free memory is a fragment: the other GPU's 80 and the half-used one's 40
    # (1 GPU at 16 cannot use it either way): F 120, +80
    (6, 24, PodRequest(gpu_memory=40 * GiB, cpu_milli=12_000), ONE_AT_16, +80),
    # 3 GPUs busy, a 2-GPU shape at 16 cores: 5 untouched GPUs take 2 pods, the fifth is of
    # no use to it (FGD: not counted). 30 cores feed 1.875 pods: (2 - 1.875) x 2 = 0.25 GPUs
    # unfed, F 20; a 1-GPU pod asking no CPU takes the fifth: 4 left, still 2 pods, F 20: 0,
    # as on a node whose CPU feeds them all (taking the GPU no 2-GPU pod could use is no gain)
    (3, 30, PodRequest(whole_gpus=1), (Shape(whole=2, cpu_milli=16_000),), 0),
    (3, 192, PodRequest(whole_gpus=1), (Shape(whole=2, cpu_milli=16_000),), 0),
    # the same node, a 1-GPU pod asking 8 cores: 22 left feed 1.375 pods, F 0.625 x 2 x 80 =
    # 100: +80
    (3, 30, PodRequest(whole_gpus=1, cpu_milli=8_000), (Shape(whole=2, cpu_milli=16_000),), +80),
])
def test_fragmentation_counts_a_shape_the_nodes_cpu_cannot_host(busy, cpu_free, req, shapes, want_gib):
    allocs = [whole(f"b{g}", g) for g in range(busy)]
    n = node("a", allocs=allocs, cpu=(cpu_free or 0) + 8, cpu_used=8) if cpu_free else node("a", allocs=allocs)
    s = snapshot(n)
    r = rows(s, "a")
    got = fragmentation_delta(s, req, r, simulate(s, req, r), shapes)
    assert got[0] / GiB == pytest.approx(want_gib)


def test_the_untouched_node_that_can_host_a_whole_node_shape_is_kept():
    """A 1-GPU pod, an 8-GPU shape at 120 cores in the workload: of two untouched nodes the
    one with 96 cores (which can never host it) wins over the one with 128."""
    shapes = (Shape(whole=1, weight=0.9, cpu_milli=8_000), Shape(whole=8, weight=0.1, cpu_milli=120_000))
    s = snapshot(node("g3", cpu=128), node("g2", cpu=96))
    scores, details = score_names(s, PodRequest(whole_gpus=1, cpu_milli=8_000), ["g3", "g2"], shapes=shapes)
    assert dict(scores)["g2"] > dict(scores)["g3"], details


# totals, untouched                                  -> scores (normalize: rint(10 x total / best))
LEVELS = [
    # 0.667 and 0.660 both round to 10: the untouched node goes one level down, the used one stays
    ([0.667, 0.660, 0.50], [False, True, True], [10, 9, 7]),
    # every node of the best level untouched: nothing to prefer, the draw stays among them
    ([0.667, 0.660, 0.50], [True, True, False], [10, 10, 7]),
    # the used node is a level below (0.55 -> 8): the untouched best keeps its 10
    ([0.667, 0.55], [True, False], [10, 8]),
    # a demoted node may tie the next level (9), never pass a used node of the best
    ([0.667, 0.64, 0.60], [True, False, False], [9, 10, 9]),
    # nothing scores: all stay 0, none goes below the extender's range
    ([0.0, 0.0], [False, True], [0, 0]),
    ([], [], []),
]


@pytest.mark.parametrize("totals,untouched,want", LEVELS)
def test_levels_put_untouched_nodes_after_used_ones_of_the_best_level(totals, untouched, want):
    got = levels(np.array(totals, float), np.array(untouched, bool))
    assert got.tolist() == want
    assert all(0 <= g <= 10 for g in got.tolist())


def test_a_small_pod_goes_to_a_node_in_use_before_it_breaks_an_untouched_one():
    # Two 8-GPU nodes, one with a GPU taken: a 1-GPU pod scores both within a twentieth of
    # the best (the 8-GPU shape's weight is too small to move a level), and the untouched
    # one yields.
    s = snapshot(node("used", allocs=[whole("a", 0)]), node("empty"))
    shapes = (Shape(whole=1, weight=0.999), Shape(whole=8, weight=0.001))
    pairs, details = score_names(s, PodRequest(whole_gpus=1), ["used", "empty"], shapes=shapes)
    assert normalize(details.total).tolist() == [10, 10]  # the same level before the rule
    assert dict(pairs) == {"used": 10, "empty": 9}


# nodes (GPUs, GPUs in use), learned shapes                              -> untouched (kept whole first)
UNTOUCHED = [
    # 8-GPU shapes learned: the idle 8-GPU node is kept, the one with a GPU taken is not
    ([(8, 0), (8, 1)], (Shape(whole=1, weight=0.9), Shape(whole=8, weight=0.1)), [True, False]),
    # the least multi-GPU shape asks 2: an idle 2-GPU node can take one whole, an idle 1-GPU node cannot
    ([(2, 0), (1, 0)], (Shape(whole=2, weight=0.5), Shape(whole=4, weight=0.5)), [True, False]),
    # no multi-GPU shape learned (shares and 1-GPU pods only): nothing needs a node whole
    ([(8, 0), (2, 0)], (Shape(fraction=0.5, weight=0.5), Shape(whole=1, weight=0.5)), [False, False]),
    # GPU 7 unhealthy: the 7 usable GPUs are all free, so the node is untouched (7 >= 4),
    # whatever its allocatable count says; with 7 unhealthy, 1 usable GPU takes no 4-GPU pod
    ([(8, 0, set(range(7))), (8, 0, {0})], (Shape(whole=1, weight=0.5), Shape(whole=4, weight=0.5)),
     [True, False]),
]


@pytest.mark.parametrize("nodes,shapes,want", UNTOUCHED)
def test_untouched_nodes_are_those_a_learned_multi_gpu_shape_could_take_whole(nodes, shapes, want):
    s = snapshot(*(node(f"n{i}", gpus=n[0], allocs=[whole(f"p{i}", *range(n[1]))] if n[1] else None,
                        healthy=n[2] if len(n) > 2 else None)
                   for i, n in enumerate(nodes)))
    assert untouched(s, s.indices([f"n{i}" for i in range(len(nodes))]), shapes).tolist() == want


def test_a_remote_load_faster_than_the_cache_scores_no_locality_and_no_score_below_0():
    # remote 10 GB/s against the disk tier's 2 GB/s: 100 GB load in 10 s remote, 50 s from
    # disk; the cache saves nothing (not -40 s), and every score stays within 0..10
    s = snapshot(node("cached", models={"m": (100 * 10**9, "disk")}), node("other"))
    w = Weights(bandwidth_remote=10 * 10**9)
    pairs, details = score_names(s, PodRequest(whole_gpus=1, model="m"), ["cached", "other"], weights=w)
    assert details.locality.tolist() == [0.0, 0.0] and details.load_seconds_avoided.tolist() == [0.0, 0.0]
    assert all(0 <= score <= 10 for _, score in pairs)
