"""RowMemo: filter's and prioritize's answers with the memo are those without it, after every
kind of snapshot update, and a call recomputes only the rows that changed."""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from scheduler.core import DEFAULT_SHAPES, PodRequest, Shape, Weights, build_snapshot, score_rows
from scheduler.core.feasibility import check
from scheduler.core.row_memo import RowMemo
from tests.scheduler.core.fixtures import NOW, GiB, node, share, snapshot, whole

REQUESTS = [PodRequest(gpu_memory=20 * GiB), PodRequest(gpu_memory=50 * GiB), PodRequest(whole_gpus=1),
            PodRequest(whole_gpus=2, gpu_memory=40 * GiB),
            PodRequest(gpu_memory=10 * GiB, products=frozenset({"NVIDIA-A100*"}))]
SHAPES = [DEFAULT_SHAPES, (Shape(fraction=0.25, weight=1.0), Shape(whole=2, weight=3.0)),
          (Shape(fraction=0.25, weight=1.0), Shape(whole=1, weight=2.0, products=frozenset({"NVIDIA-A100*"})))]


def one(name: str, rng: random.Random, gpus: int = 4):
    return node(name, gpus=gpus, used={g: rng.choice([0, 0, 10, 30]) for g in range(gpus)},
                reported_ago=rng.choice([10, 10, 400]),
                product=rng.choice(["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"]))


@pytest.mark.parametrize("seed", range(4))
def test_answers_with_the_memo_equal_those_without_along_a_lineage_of_updates(seed):
    rng = random.Random(seed)
    states = [one(f"n{i}", rng) for i in range(12)]
    s = snapshot(*states)
    memo = RowMemo()
    for step in range(150):
        op = rng.random()
        name = f"n{rng.randrange(12)}"
        if op < 0.45:
            alloc = (share(f"p{step}", rng.randrange(4), rng.choice([10, 20, 40])) if rng.random() < 0.6
                     else whole(f"p{step}", *sorted(rng.sample(range(4), rng.choice([1, 2])))))
            s = s.with_allocation(name, alloc)
        elif op < 0.75:
            held = [a.pod_key for a in s.allocations[s.index[name]]]
            if held:
                s = s.without_allocation(name, rng.choice(held))
        elif op < 0.85:  # a rebuild with the same nodes, one's report changed: same index, new arrays
            states[int(name[1:])] = one(name, rng)
            s = build_snapshot(states, now=NOW, stale_after_s=600, previous=s)
        elif op < 0.92:  # time passes: reports go stale, their rows unusable
            s = s.at(NOW + rng.choice([0, 300, 700]))
        else:  # a node added: a new index, nothing carried over
            states = states[:11] + [node("n11", gpus=rng.choice([4, 8]))]
            s = build_snapshot(states, now=NOW, stale_after_s=600, previous=s)
        req, shapes = rng.choice(REQUESTS), rng.choice(SHAPES)
        names = [f"n{i}" for i in rng.sample(range(12), 12)] + ["ghost"]  # kube-scheduler's order, one unknown
        rows = s.indices(names)
        fresh, kept = check(s, req, rows), check(s, req, rows, memo)
        for a, b in zip(fresh[1:], kept[1:]):
            assert np.array_equal(a, b), (seed, step, "check")
        w = Weights(packing=0.5)
        fresh, kept = score_rows(s, req, rows, w, shapes), score_rows(s, req, rows, w, shapes, memo)
        for field in ("packing", "fragmentation", "locality", "score"):
            assert np.array_equal(getattr(fresh, field), getattr(kept, field)), (seed, step, field)


def count_rows(memo: RowMemo, s) -> int:
    """Rows the next call computes, for a computation reading free memory."""
    before = memo.rows_computed
    memo.get(s, "k", ("free",), lambda rows: (s.free_total[rows],))
    return memo.rows_computed - before


def test_only_changed_rows_are_computed_again():
    idle = [node(f"n{i}", gpus=4) for i in range(8)]
    s = snapshot(*idle)
    memo = RowMemo()
    # (what happened since the last call, rows that call computes)
    steps = [
        ("first call: every row", s, 8),
        ("the same snapshot", s, 0),
        ("one pod bound to n3", s.with_allocation("n3", share("a", 0, 20)), 1),
        ("one more on n3, one on n5", s.with_allocation("n3", share("a", 0, 20)).with_allocation("n3", share("b", 1, 20))
         .with_allocation("n5", whole("c", 1)), 2),
        ("a rebuild: n3 and n5 idle again", build_snapshot(idle, now=NOW, stale_after_s=600, previous=s), 2),
        ("a snapshot of other nodes: a new index", snapshot(*idle[1:]), 7),
        ("three of seven changed: past a quarter, all again", snapshot(*idle[1:]).with_allocation("n1", whole("d", 0))
         .with_allocation("n2", whole("e", 0)).with_allocation("n4", whole("f", 0)), 7),
    ]
    for what, snap, computed in steps:
        assert count_rows(memo, snap) == computed, what


def test_results_are_kept_per_key_and_the_least_recently_used_key_goes():
    s = snapshot(*[node(f"n{i}", gpus=4) for i in range(4)])
    memo = RowMemo(keys_kept=2)
    compute = lambda rows: (s.free_total[rows],)  # noqa: E731
    for key in ("a", "b", "a", "c"):  # c evicts b, used less recently than a
        memo.get(s, key, ("free",), compute)
    assert memo.rows_computed == 12
    memo.get(s, "a", ("free",), compute)
    assert memo.rows_computed == 12
    memo.get(s, "b", ("free",), compute)
    assert memo.rows_computed == 16
    assert not memo.get(s, "b", ("free",), compute)[0].flags.writeable  # shared across threads: read-only


def _rebuilt(base: list, i: int, **change) -> list:
    nodes = list(base)
    nodes[i] = node(f"n{i}", gpus=4, **change)
    return nodes


BASE = [node(f"n{i}", gpus=4) for i in range(4)]
OLD = [node(f"n{i}", gpus=4, reported_ago=400) for i in range(4)]  # stale 200 s after NOW (600 s allowed)
MIXED = [node("n0", gpus=4, product="NVIDIA-A100-SXM4-80GB")] + BASE[1:]  # both products known before
SICK = _rebuilt(BASE, 2, healthy=set())  # n2: no usable GPU, so nothing but its status can change


def _unreadable(nodes: list, i: int) -> list:
    nodes = list(nodes)
    nodes[i] = replace(nodes[i], report=replace(nodes[i].report, errors=("gpus: not JSON",)))
    return nodes


@pytest.mark.parametrize("what, before, after, req", [
    # (nodes, now) before and after a rebuild with the same node names: each change reaches
    # the answer through one input or one part of the key alone
    ("time passes: stale reports' age grows", (OLD, NOW + 300), (OLD, NOW + 700), PodRequest(gpu_memory=10 * GiB)),
    ("a stale n1 reports an older time: only its age", (OLD, NOW + 300), (_rebuilt(OLD, 1, reported_ago=450), NOW + 300),
     PodRequest(gpu_memory=10 * GiB)),
    ("only n1's product changes", (MIXED, NOW), (_rebuilt(MIXED, 1, product="NVIDIA-A100-SXM4-80GB"), NOW),
     PodRequest(gpu_memory=10 * GiB, products=frozenset({"NVIDIA-A100*"}))),
    ("only n2's status changes: its report turns unreadable", (SICK, NOW), (_unreadable(SICK, 2), NOW),
     PodRequest(gpu_memory=10 * GiB)),
    ("n2's report is old at the same now", (BASE, NOW), (_rebuilt(BASE, 2, reported_ago=900), NOW),
     PodRequest(gpu_memory=10 * GiB)),
    ("a GPU of n3 turns unhealthy", (BASE, NOW), (_rebuilt(BASE, 3, healthy={0, 1, 2}), NOW),
     PodRequest(whole_gpus=4)),
])
def test_each_kind_of_change_reaches_the_memos_answers(what, before, after, req):
    first = build_snapshot(before[0], now=before[1], stale_after_s=600)
    then = build_snapshot(after[0], now=after[1], stale_after_s=600, previous=first)
    assert then.index is first.index  # rows carried over: the memo recomputes only what differs
    memo, names = RowMemo(), [f"n{i}" for i in range(4)]
    for s in (first, then):
        kept, kept_scores = check(s, req, s.indices(names), memo), score_rows(s, req, s.indices(names), memo=memo).score
    fresh = check(then, req, then.indices(names))
    assert all(np.array_equal(a, b) for a, b in zip(fresh[1:], kept[1:])), what
    assert np.array_equal(score_rows(then, req, then.indices(names)).score, kept_scores), what


def test_a_product_renumbered_by_a_rebuild_reaches_pinned_shapes_scores():
    """A rebuild derives the product table afresh: n1, the only node of its product, turns
    into a new one whose code is the number its old product had. Its code column is the
    same, its meaning is not; a shape pinned to the old product must see the change."""
    names = [f"n{i}" for i in range(4)]
    before = [node(n, gpus=4, product=p) for n, p in zip(names, ["NVIDIA-H100-80GB-HBM3", "NVIDIA-L40S",
                                                                  "NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-80GB-HBM3"])]
    after = list(before)
    after[1] = node("n1", gpus=4, product="NVIDIA-B200")
    first = build_snapshot(before, now=NOW, stale_after_s=600)
    then = build_snapshot(after, now=NOW, stale_after_s=600, previous=first)
    assert then.index is first.index
    assert then.product_code.tolist() == first.product_code.tolist()  # same numbers, other products
    shapes = (Shape(fraction=0.25, weight=1.0), Shape(whole=1, weight=1.0, products=frozenset({"NVIDIA-L40S"})))
    req, memo = PodRequest(gpu_memory=20 * GiB), RowMemo()
    for s in (first, then):
        kept = score_rows(s, req, s.indices(names), None, shapes, memo)
    fresh = score_rows(then, req, then.indices(names), None, shapes)
    assert np.array_equal(fresh.fragmentation, kept.fragmentation)
    assert fresh.fragmentation[1] != score_rows(first, req, first.indices(names), None, shapes).fragmentation[1]


@pytest.mark.parametrize("change", ["memory", "cpu"])
def test_a_change_of_requested_memory_or_cpu_alone_reaches_memoised_scores(change):
    """with_requested moves only the CPU or only the memory columns of one node; shapes that
    ask both must see it through the memo (ram_free and cpu_free are score inputs)."""
    names = [f"n{i}" for i in range(4)]
    # 96 cores with 64 requested, 1 TiB of memory with 512 GiB requested, on every node; then n1's
    # memory requested to 1000 GiB (24 left: no host for 100 GiB) or its CPU to 95 cores (1 left)
    first = snapshot(*(node(n, gpus=4, cpu=96, cpu_used=64, ram_gib=1024, ram_used_gib=512) for n in names))
    moved = (64_000, 1000 * GiB) if change == "memory" else (95_000, 512 * GiB)
    then = first.with_requested({"n1": moved})
    shapes = (Shape(whole=1, weight=1.0, cpu_milli=8_000, ram=100 * GiB),)
    req, memo = PodRequest(gpu_memory=20 * GiB), RowMemo()
    for s in (first, then):
        kept = score_rows(s, req, s.indices(names), None, shapes, memo)
    fresh = score_rows(then, req, then.indices(names), None, shapes)
    assert np.array_equal(fresh.fragmentation, kept.fragmentation)
    before = score_rows(first, req, first.indices(names), None, shapes).fragmentation
    assert fresh.fragmentation[1] != before[1] and np.array_equal(fresh.fragmentation[[0, 2, 3]], before[[0, 2, 3]])
