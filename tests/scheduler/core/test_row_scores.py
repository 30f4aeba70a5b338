"""RowScores: the memo gives what scoring every row from scratch gives, and scores only what changed."""
from __future__ import annotations

import random

import numpy as np
import pytest

from scheduler.core import DEFAULT_SHAPES, PodRequest, Shape, build_snapshot
from scheduler.core.row_scores import RowScores
from scheduler.core.scoring import fragmentation, packing, simulate
from tests.scheduler.core.fixtures import NOW, GiB, node, share, snapshot, whole

REQUESTS = [PodRequest(gpu_memory=20 * GiB), PodRequest(gpu_memory=50 * GiB), PodRequest(whole_gpus=1),
            PodRequest(whole_gpus=2, gpu_memory=40 * GiB)]
SHAPES = [DEFAULT_SHAPES, (Shape(fraction=0.25, weight=1.0), Shape(whole=2, weight=3.0))]


def from_scratch(s, req, shapes) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(s))
    p = simulate(s, req, rows)
    return packing(s, req, rows, p), fragmentation(s, req, rows, p, shapes)


def one(name: str, rng: random.Random, gpus: int = 4):
    return node(name, gpus=gpus, used={g: rng.choice([0, 0, 10, 30]) for g in range(gpus)})


def nodes(n: int, rng: random.Random, gpus: int = 4):
    return [one(f"n{i}", rng, gpus) for i in range(n)]


@pytest.mark.parametrize("seed", range(4))
def test_the_memo_equals_scoring_every_row_along_a_lineage_of_updates(seed):
    rng = random.Random(seed)
    states = nodes(12, rng)
    s = snapshot(*states)
    memo = RowScores()
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
        elif op < 0.85:  # a rebuild with the same nodes (one's report changed): same index, new arrays
            states[int(name[1:])] = one(name, rng)
            s = build_snapshot(states, now=NOW, stale_after_s=600, previous=s)
        elif op < 0.92:  # time passes: some reports go stale, their rows become unusable
            s = s.at(NOW + rng.choice([0, 300, 700]))
        else:  # a node added: a new index, nothing carried over
            states = states[:11] + [node("n11", gpus=rng.choice([4, 8]))]
            s = build_snapshot(states, now=NOW, stale_after_s=600, previous=s)
        req, shapes = rng.choice(REQUESTS), rng.choice(SHAPES)
        pack, frag = memo.get(s, req, shapes)
        want_pack, want_frag = from_scratch(s, req, shapes)
        assert np.array_equal(pack, want_pack) and np.array_equal(frag, want_frag), (seed, step)


def test_only_changed_rows_are_scored_again():
    # 8 idle nodes; each row is (what happened since the last call, rows that call scores)
    idle = [node(f"n{i}", gpus=4) for i in range(8)]
    s = snapshot(*idle)
    memo, req = RowScores(), PodRequest(gpu_memory=20 * GiB)
    steps = [
        ("first call: every row", s, 8),
        ("the same snapshot", s, 0),
        ("one pod bound to n3", s.with_allocation("n3", share("a", 0, 20)), 1),
        ("two more, on n3 and n5", s.with_allocation("n3", share("a", 0, 20)).with_allocation("n3", share("b", 1, 20))
         .with_allocation("n5", whole("c", 1)), 2),
        # the nodes as first built: n3 and n5 have no pods again
        ("a rebuild", build_snapshot(idle, now=NOW, stale_after_s=600, previous=s), 2),
        ("other nodes: a new index", snapshot(*idle[1:]), 7),

    ]
    before = 0
    for what, snap, scored in steps:
        memo.get(snap, req, DEFAULT_SHAPES)
        assert memo.rows_computed - before == scored, what
        before = memo.rows_computed


def test_a_different_shape_is_a_different_entry_and_old_ones_are_dropped():
    s = snapshot(*nodes(4, random.Random(2)))
    memo = RowScores(shapes_kept=2)
    for gib in (10, 20, 30):
        memo.get(s, PodRequest(gpu_memory=gib * GiB), DEFAULT_SHAPES)
    assert memo.rows_computed == 12
    memo.get(s, PodRequest(gpu_memory=30 * GiB), DEFAULT_SHAPES)  # kept
    memo.get(s, PodRequest(gpu_memory=10 * GiB), DEFAULT_SHAPES)  # dropped: the oldest of three
    assert memo.rows_computed == 16
