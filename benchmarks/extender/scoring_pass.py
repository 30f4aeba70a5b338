"""What one full scoring pass costs (`score_rows` over every node, no row memo: the cost
paid on a request shape the memo has not seen), with learned shapes pinned to GPU
products against the same shapes unpinned, in the same run.

    .venv/bin/python -m benchmarks.extender.scoring_pass --nodes 5000
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from scheduler.core import PodRequest, Shape, build_snapshot, score_rows
from scheduler.core.snapshot import Allocation, ClusterSnapshot, NodeState
from scheduler.nodeinfo import GPU, NodeReport

GiB = 2**30
PRODUCTS = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S", "NVIDIA-B200")
UNPINNED = (Shape(fraction=0.25, weight=0.15), Shape(fraction=0.5, weight=0.2), Shape(whole=1, weight=0.3),
            Shape(whole=2, weight=0.15), Shape(whole=4, weight=0.1), Shape(whole=8, weight=0.05, cpu_milli=64_000),
            Shape(whole=8, weight=0.03, cpu_milli=88_000), Shape(whole=8, weight=0.02, cpu_milli=120_000))
# half of them pinned, to three distinct pins (one a glob)
PINS = (frozenset(), frozenset(PRODUCTS[:1]), frozenset({"NVIDIA-A100-*"}), frozenset(PRODUCTS[2:]), frozenset(),
        frozenset(PRODUCTS[:1]), frozenset(PRODUCTS[:1]), frozenset())
PINNED = tuple(Shape(sh.whole, sh.fraction, sh.weight, sh.cpu_milli, pin) for sh, pin in zip(UNPINNED, PINS))


def cluster(nodes: int, seed: int = 0) -> ClusterSnapshot:
    """8 x 80 GiB GPUs a node, each 30% a share of 5-60 GiB, 15% whole, else free; 96 or 128
    CPU with 0-90 requested; the four products in turn."""
    rng = np.random.default_rng(seed)
    at = datetime.now(timezone.utc)
    states = []
    for n in range(nodes):
        allocs = []
        for g in range(8):
            r = rng.random()
            if r < 0.3:
                allocs.append(Allocation(f"s{n}-{g}", (g,), int(rng.integers(5, 60)) * GiB, whole=False))
            elif r < 0.45:
                allocs.append(Allocation(f"w{n}-{g}", (g,), 80 * GiB, whole=True))
        product = PRODUCTS[n % len(PRODUCTS)]
        report = NodeReport(gpus=tuple(GPU(i, f"GPU-{n}-{i}", 80 * GiB, 0, 0.0, True, product) for i in range(8)),
                            reported_at=at)
        states.append(NodeState(f"n{n}", 8, product, 80 * 1024, report, allocs,
                                cpu_allocatable=int(rng.choice([96, 128])) * 1000,
                                cpu_requested=int(rng.integers(0, 90)) * 1000))
    return build_snapshot(states, now=at.timestamp(), stale_after_s=600)


def best_ms(s: ClusterSnapshot, req: PodRequest, shapes: Sequence[Shape], runs: int = 7, calls: int = 20) -> float:
    rows = np.arange(len(s))
    best = float("inf")
    for _ in range(runs):
        for _ in range(calls):
            t = time.perf_counter()
            score_rows(s, req, rows, None, shapes)
            best = min(best, time.perf_counter() - t)
    return best * 1e3


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000)
    args = ap.parse_args(argv)
    s = cluster(args.nodes)
    print(f"score_rows over {args.nodes:,} nodes, no memo, best of 7 x 20 calls")
    for what, req in (("share 20Gi", PodRequest(gpu_memory=20 * GiB, cpu_milli=6000)),
                      ("1 whole GPU", PodRequest(whole_gpus=1, cpu_milli=8000))):
        plain, pinned = best_ms(s, req, UNPINNED), best_ms(s, req, PINNED)
        print(f"  {what}: 8 shapes unpinned {plain:.2f} ms; 4 of them pinned (3 pins) {pinned:.2f} ms "
              f"({pinned / plain:.2f}x)")


if __name__ == "__main__":
    main()
