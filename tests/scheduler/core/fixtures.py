"""Small snapshots for the core's table tests: GPUs sized in GiB so rows read as arithmetic."""
from __future__ import annotations

from datetime import datetime, timezone
from itertools import compress
from typing import Sequence

from scheduler.core import (DEFAULT_SHAPES, Allocation, ClusterSnapshot, NodeState, PodRequest, ScoreDetails, Shape,
                            Weights, build_snapshot, filter_rows, score_rows)
from scheduler.nodeinfo import GPU, CachedModel, NodeReport

GiB = 2**30
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc).timestamp()


def node(name: str, gpus: int = 8, gib: int = 80, *, used: dict[int, int] | None = None,
         models: dict[str, tuple[int, str]] | None = None, healthy: set[int] | None = None,
         allocs: list[Allocation] | None = None, reported_ago: float = 10.0,
         product: str = "NVIDIA-H100-80GB-HBM3") -> NodeState:
    """A node whose agent reported `reported_ago` seconds before NOW."""
    report = NodeReport(
        gpus=tuple(GPU(i, f"GPU-{name}-{i}", gib * GiB, (used or {}).get(i, 0) * GiB, 0.0,
                       healthy is None or i in healthy, product) for i in range(gpus)),
        models=tuple(CachedModel(m, b, t) for m, (b, t) in (models or {}).items()),
        reported_at=datetime.fromtimestamp(NOW - reported_ago, timezone.utc))
    return NodeState(name, gpus, product, gib * 1024, report, list(allocs or []))


def share(pod: str, gpu: int, gib: int) -> Allocation:
    return Allocation(pod, (gpu,), gib * GiB, whole=False)


def whole(pod: str, *gpus: int) -> Allocation:
    return Allocation(pod, tuple(gpus), 0, whole=True, count=len(gpus))


def snapshot(*nodes: NodeState, stale_after_s: float = 600.0):
    return build_snapshot(list(nodes), now=NOW, stale_after_s=stale_after_s)


def filter_names(s: ClusterSnapshot, req: PodRequest, names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """filter_rows read by name: the names that fit, in order, and each other one's reason."""
    ok, why = filter_rows(s, req, s.indices(names))
    return list(compress(names, ok.tolist())), dict(zip(compress(names, (~ok).tolist()), why))


def score_names(s: ClusterSnapshot, req: PodRequest, names: Sequence[str], weights: Weights | None = None,
                shapes: Sequence[Shape] = DEFAULT_SHAPES) -> tuple[list[tuple[str, int]], ScoreDetails]:
    """score_rows read by name: (name, score) pairs in order, and the details."""
    details = score_rows(s, req, s.indices(names), weights, shapes)
    return list(zip(names, details.score.tolist())), details
