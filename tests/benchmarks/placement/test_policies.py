"""Each baseline's choice on tiny clusters; the arithmetic is in the comments.

Cluster (every row below): three T4 nodes, 32 CPU, 128000 MiB, 4 GPUs each, with
- n0: a 0.5 share on GPU 0 and 16 CPU used  -> GPU free [500,1000,1000,1000] (3500), CPU free 16000
- n1: idle                                    -> GPU free 4000, CPU free 32000
- n2: 2 whole GPUs (0, 1) and 8 CPU used      -> GPU free [0,0,1000,1000] (2000), CPU free 24000
Pods ask no host memory, so the memory terms are equal everywhere.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.placement import fgd, policies
from benchmarks.placement.state import State
from tests.benchmarks.placement.tiny import nodes, place, pod, pods


def cluster() -> State:
    s = State(nodes((32000, 128000, 4, "T4"), (32000, 128000, 4, "T4"), (32000, 128000, 4, "T4")))
    place(s, pod(1, 500, cpu=16000), 0, (0,))
    place(s, pod(2, 1000, cpu=8000), 2, (0, 1))
    return s


SHARE = dict(num_gpu=1, gpu_milli=400, cpu=4000)  # 0.4 GPU, 4 CPU
WHOLE2 = dict(num_gpu=2, gpu_milli=1000, cpu=4000)  # 2 GPUs, 4 CPU
CPU20 = dict(cpu=20000)  # CPU only, 20 CPU: n0 (16 free) cannot
SHARE6 = dict(num_gpu=1, gpu_milli=600, cpu=1000)  # does not fit n0's occupied GPU 0 (500 free)

CASES = [
    # spread (LeastAllocated): mean of (cap - requested after)/cap over cpu, memory, GPU
    # share: n0 (.375 + 1 + .775)/3, n1 (.875 + 1 + .9)/3 <- highest, n2 (.625 + 1 + .4)/3; best-fit GPU: 0
    ("spread", SHARE, (1, (0,))),
    # 2 GPUs: n0 .375+1+.375, n1 .875+1+.5 <- highest, n2 .625+1+0
    ("spread", WHOLE2, (1, (0, 1))),
    # CPU only: n1 (12/32 + 1 + 4000/4000) = 2.375 > n2 (4/32 + 1 + 2000/4000) = 1.625
    ("spread", CPU20, (1, ())),
    # most-allocated: mean of requested after / cap
    # share: n0 .625+0+.225 = .85, n1 .125+0+.1 = .225, n2 .375+0+.6 = .975 <- highest; best-fit of GPUs 2,3: 2
    ("most-allocated", SHARE, (2, (2,))),
    # 2 GPUs: n0 .625+.625, n1 .125+.5, n2 .375+1 <- highest; GPUs 2,3
    ("most-allocated", WHOLE2, (2, (2, 3))),
    # CPU only: n1 .625+0+0 < n2 .875+0+.5
    ("most-allocated", CPU20, (2, ())),
    # best-fit: GPU milli left after: n0 3500-400 = 3100, n1 3600, n2 2000-400 = 1600 <- least
    ("best-fit", SHARE, (2, (2,))),
    # 2 GPUs: n0 1500, n1 2000, n2 0 <- least
    ("best-fit", WHOLE2, (2, (2, 3))),
    # CPU only (GPU left unchanged): n1 4000, n2 2000 <- least
    ("best-fit", CPU20, (2, ())),
    # dot-product: demand/cap . free/cap over (cpu, memory, GPU)
    # share: cpu .125 x (.5, 1, .75), GPU .1 x (.875, 1, .5): n0 .15, n1 .225 <- highest, n2 .14375;
    # GPU most free (all 1000): 0
    ("dot-product", SHARE, (1, (0,))),
    # 2 GPUs: GPU .5 x (.875, 1, .5): n0 .0625+.4375 = .5, n1 .125+.5 = .625 <- highest, n2 .34375
    ("dot-product", WHOLE2, (1, (0, 1))),
    # CPU only: cpu .625 x (n1 1, n2 .75): n1
    ("dot-product", CPU20, (1, ())),
    # gpu-packing: tier 0 = an occupied GPU that fits: n0's GPU 0 (500 free >= 400)
    ("gpu-packing", SHARE, (0, (0,))),
    # 0.6 does not fit n0's GPU 0; tier 1 = free GPUs on nodes already in use (n0, n2): n0 first, GPU 1
    ("gpu-packing", SHARE6, (0, (1,))),
    # 2 GPUs: nodes in use first, node order: n0 (3 free), lowest GPUs 1, 2
    ("gpu-packing", WHOLE2, (0, (1, 2))),
    # CPU only: n0 cannot (16 CPU free), n2 is in use, n1 idle: n2
    ("gpu-packing", CPU20, (2, ())),
]


@pytest.mark.parametrize("policy,ask,want", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_baseline_choice(policy, ask, want):
    s = cluster()
    p = pod(**ask)
    pol = policies.baselines()[policy]()
    pol.start(s, pods(p), seed=1)
    assert pol.choose(s, p, s.candidates(p)) == want


@pytest.mark.parametrize("policy", sorted(policies.baselines()) + ["fgd"])
@pytest.mark.parametrize("ask", [
    dict(num_gpu=1, gpu_milli=400, spec="V100M32"),  # no V100M32 node
    dict(num_gpu=5, gpu_milli=1000),  # no node has 5 GPUs
    dict(cpu=40000),  # no node has 40 CPU
    dict(num_gpu=1, gpu_milli=1000, mem=200000),  # no node has 200000 MiB
])
def test_nothing_fits(policy, ask):
    s = cluster()
    p = pod(**ask)
    pol = fgd.FGD() if policy == "fgd" else policies.baselines()[policy]()
    pol.start(s, pods(p), seed=1)
    assert pol.choose(s, p, s.candidates(p)) is None


def test_random_is_seeded_and_feasible():
    picks = []
    for seed in (1, 1, 2):
        s = cluster()
        pol = policies.Random()
        pol.start(s, pods(), seed)
        got = []
        for _ in range(6):
            p = pod(num_gpu=1, gpu_milli=300, cpu=1000)
            c = s.candidates(p)
            node, gpus = pol.choose(s, p, c)
            assert c.feasible[node] and c.fits[node, gpus[0]]
            s.apply(p, node, gpus)
            got.append((node, gpus))
        picks.append(got)
    assert picks[0] == picks[1]
    assert picks[0] != picks[2]


# ---------- FGD

def test_fgd_share_goes_where_fragmentation_grows_least():
    # One T4 node, GPU 0 holds 0.4 -> free [600, 1000]; the workload is all 0.5 shares.
    # Before: both GPUs host a 0.5, F = 0.
    # 0.5 on GPU 0 -> free [100, 1000]: 100 < 500 is a fragment, F = 100, delta +100
    # 0.5 on GPU 1 -> free [600, 500]: both still host a 0.5, F = 0, delta 0  <- FGD
    # best-fit takes GPU 0 (600 is the least free that holds 500).
    s = State(nodes((32000, 128000, 2, "T4")))
    place(s, pod(1, 400), 0, (0,))
    workload = pods(*[pod(1, 500) for _ in range(3)])
    p = pod(1, 500)
    f = fgd.FGD()
    f.start(s, workload, 1)
    rows, delta = f.deltas(s, p, s.candidates(p))
    assert delta[0].tolist()[:2] == [100.0, 0.0]
    assert f.choose(s, p, s.candidates(p)) == (0, (1,))
    b = policies.BestFit()
    assert b.choose(s, p, s.candidates(p)) == (0, (0,))


def test_fgd_keeps_cpu_from_stranding_gpus():
    # The workload is 0.5 shares needing 4 CPU. n0: 8 CPU, 2 idle GPUs; n1: 8 CPU, both GPUs taken whole.
    # A CPU-only pod of 6 CPU on n0 leaves 2 CPU: no 0.5 share can run there, its 2000 free milli
    # become fragments (delta +2000); on n1 there is no free GPU to strand (delta 0) <- FGD.
    # spread prefers n0 (more GPU left).
    s = State(nodes((8000, 64000, 2, "T4"), (8000, 64000, 2, "T4")))
    place(s, pod(2, 1000, cpu=0), 1, (0, 1))
    workload = pods(*[pod(1, 500, cpu=4000) for _ in range(3)])
    p = pod(cpu=6000)
    f = fgd.FGD()
    f.start(s, workload, 1)
    rows, delta = f.deltas(s, p, s.candidates(p))
    assert rows.tolist() == [0, 1] and delta.tolist() == [2000.0, 0.0]
    assert f.choose(s, p, s.candidates(p)) == (1, ())
    assert policies.Spread().choose(s, p, s.candidates(p)) == (0, ())


def test_fragmentation_measure():
    # Workload: half 0.5 shares (4 CPU), half 1 whole GPU (4 CPU).
    # n0: GPU free [300, 1000], CPU plenty. Share 0.5: GPU 1 hosts it (usable 1000); whole 1: GPU 1 (1000).
    #     F = 1300 - .5 x 1000 - .5 x 1000 = 300; stranded: GPU 0's 300 (no shape fits it) = 300.
    # n1: 2 idle GPUs but only 1 CPU: no class runs there, F = 2000, stranded 2000.
    # Total: F 2.3 GPUs, stranded 2.3, unallocated 3.3.
    s = State(nodes((32000, 64000, 2, "T4"), (1000, 64000, 2, "T4")))
    place(s, pod(1, 700, cpu=0), 0, (0,))
    w = fgd.TargetWorkload(pods(pod(1, 500, cpu=4000), pod(1, 1000, cpu=4000)))
    m = fgd.measure(s, w)
    assert m == pytest.approx({"fgd_fragmented_gpus": 2.3, "stranded_gpus": 2.3, "unallocated_gpus": 3.3})


def test_fgd_incremental_state_equals_recomputation():
    from benchmarks.placement.trace import Pods
    s = State(nodes(*[(16000, 64000, 4, "V100M32")] * 3, *[(8000, 32000, 2, "T4")] * 3))
    shapes = [(1, 250), (1, 500), (1, 1000), (2, 1000), (0, 0), (1, 800)]
    items = [pod(n, m, cpu=1000 + 500 * (i % 5), mem=1000 * (i % 3), spec="T4" if i % 7 == 0 else "")
             for i, (n, m) in enumerate(shapes * 6)]
    workload = Pods("w", tuple(items), "creation_time order", 0)
    f = fgd.FGD()
    f.start(s, workload, 1)
    for p in items:
        c = s.candidates(p)
        choice = f.choose(s, p, c)
        if choice is None:
            continue
        s.apply(p, *choice)
        f.placed(s, p, choice)
        q = f.w.q(s.cpu_free, s.mem_free, s.model_code)
        ge, usable = f.w.gpu_terms(s.gpu_free)
        full = f.w.fragmentation(s.gpu_free.sum(axis=1), q, ge, usable)
        assert f.frag == pytest.approx(full)


def _paper_fragmentation(s: State, items) -> float:
    """FGD's F(M) as the paper defines it, one node and one pod class at a time: a class
    that cannot run on the node (CPU, memory, GPU model, no GPU with room, too few whole
    GPUs) or asks no GPU makes all the node's free GPU capacity a fragment; otherwise the
    free capacity of GPUs with less free than min(its share, 1 GPU). Weighted by popularity."""
    from collections import Counter

    from benchmarks.placement.state import MODELS
    classes = Counter((p.cpu_milli, p.memory_mib, p.num_gpu, p.gpu_milli, p.gpu_spec) for p in items)
    total = sum(classes.values())
    frag = 0.0
    for n in range(len(s)):
        free = s.gpu_free[n][s.present[n]]
        for (cpu, mem, num, milli, spec), count in classes.items():
            runs = num > 0 and s.cpu_free[n] >= cpu and s.mem_free[n] >= mem \
                and (not spec or MODELS[s.model_code[n]] in spec) \
                and (free >= milli).sum() >= (num if milli == 1000 else 1)
            frag += count / total * (free[free < min(milli, 1000)].sum() if runs else free.sum())
    return frag / 1000


def test_fgd_measure_and_deltas_are_the_papers_definition():
    """measure() and FGD's per-node deltas against the definition computed the slow way, on
    a mixed cluster after a replay: every candidate node (and GPU, for shares) of several pods."""
    import copy

    from tests.benchmarks.placement.test_sim import mixed_nodes, synthetic
    ns, ps = mixed_nodes(), synthetic(120, seed=3, specs=("", "", "T4", "G2|G3"))
    s, f = State(ns), fgd.FGD()
    f.start(s, ps, 1)
    w = f.w
    checked = 0
    for i, p in enumerate(ps.pods):
        c = s.candidates(p)
        choice = policies.kube_default(s, p, c) if p.kind == "cpu" else f.choose(s, p, c)
        if choice is None:
            continue
        if i % 7 == 0 and p.kind != "cpu":
            rows, delta = f.deltas(s, p, c)
            before = _paper_fragmentation(s, ps.pods)
            for j, n in enumerate(rows.tolist()):
                for g in (np.flatnonzero(c.fits[n]).tolist() if p.kind == "share" else [None]):
                    after = copy.deepcopy(s)
                    after.apply(p, n, (g,) if g is not None else policies.default_gpus(s, p, n, c))
                    got = delta[j, g] if g is not None else delta[j]
                    assert got / 1000 == pytest.approx(_paper_fragmentation(after, ps.pods) - before, abs=1e-9)
                    checked += 1
        s.apply(p, *choice)
        f.placed(s, p, choice)
        assert fgd.measure(s, w)["fgd_fragmented_gpus"] == pytest.approx(_paper_fragmentation(s, ps.pods))
    assert checked >= 100


# kube_default (CPU-only pods, every policy): LeastAllocated + BalancedAllocation over cpu
# and memory, in kube-scheduler's integer arithmetic. cluster(): n0 16 of 32 CPU requested,
# n1 none, n2 8; memory 0 asked by the pods placed, scored as 200 MiB each (non-zero).
KUBE_DEFAULT = [
    # CPU20 (20000m, memory 0 -> 200 MiB): n0 cannot (16 CPU free).
    # n1: cpu (32000-20000)*100//32000 = 37, mem (128000-200)*100//128000 = 99 -> 68;
    #     balanced 1 - |.625 - .0016|/2 = .688 -> 68; total 136
    # n2: cpu (32000-28000)*100//32000 = 12, mem (128000-400)*100//128000 = 99 -> 55;
    #     balanced 1 - |.875 - .0031|/2 = .564 -> 56; total 111          -> n1
    (CPU20, 1),
    # 1 CPU, 64000 MiB: n0 cpu 46, mem 49 -> 47; balanced 1 - |.531 - .5016|/2 -> 98; 145
    #                   n1 cpu 96, mem 50 -> 73; balanced 1 - |.031 - .5|/2 = .766 -> 76; 149 <- highest
    #                   n2 cpu 71, mem 49 -> 60; balanced 1 - |.281 - .5031|/2 -> 88; 148
    (dict(cpu=1000, mem=64000), 1),
    # 1 CPU, 120000 MiB: n0 cpu 46, mem (128000-120200)*100//128000 = 6 -> 26; balanced 1-|.531-.939|/2 -> 79; 105
    #                    n1 cpu 96, mem 6 -> 51; balanced 1 - |.031 - .9375|/2 = .547 -> 54; 105
    #                    n2 cpu 71, mem 6 -> 38; balanced 1 - |.281 - .939|/2 -> 67; 105: tie, node order -> n0
    (dict(cpu=1000, mem=120000), 0),
]


@pytest.mark.parametrize("ask,want", KUBE_DEFAULT)
def test_cpu_only_pods_go_where_the_default_scheduler_puts_them(ask, want):
    s = cluster()
    p = pod(**ask)
    assert policies.kube_default(s, p, s.candidates(p)) == (want, ())


def test_cpu_only_ties_are_drawn_as_select_host_draws():
    """The third row above ties all three nodes at 105: with a Generator, kube_default draws
    among them (selectHost), the same for the same seed; without one, node order."""
    s = cluster()
    p = pod(cpu=1000, mem=120000)
    c = s.candidates(p)
    draws = [policies.kube_default(s, p, c, np.random.default_rng([seed, policies.CPU_TIES_STREAM]))[0]
             for seed in range(30)]
    assert set(draws) == {0, 1, 2}  # every tied node is drawn (30 draws of 3: all but surely)
    again = [policies.kube_default(s, p, c, np.random.default_rng([seed, policies.CPU_TIES_STREAM]))[0]
             for seed in range(30)]
    assert draws == again
    # a node of a lower score is never drawn: CPU20 has one highest, n1 (136 against n2's 111)
    q = pod(**CPU20)
    assert {policies.kube_default(s, q, s.candidates(q), np.random.default_rng(seed))[0] for seed in range(10)} == {1}
    assert policies.drawn_max(np.zeros(3), np.zeros(3, bool), np.random.default_rng(0)) is None


def test_drawn_max_draws_among_the_feasible_only():
    # the highest score (9) is at an infeasible row: never drawn; the feasible top is 5, rows 1 and 3
    score, mask = np.array([9.0, 5.0, 1.0, 5.0]), np.array([False, True, True, True])
    assert {policies.drawn_max(score, mask, np.random.default_rng(seed)) for seed in range(20)} == {1, 3}
    # every feasible score -inf: still only feasible rows
    assert policies.drawn_max(np.array([-np.inf, -np.inf]), np.array([False, True]), np.random.default_rng(0)) == 1
