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
         product: str = "NVIDIA-H100-80GB-HBM3", cpu: int = 0, cpu_used: int = 0, ram_gib: int = 0,
         ram_used_gib: int = 0) -> NodeState:
    """A node whose agent reported `reported_ago` seconds before NOW; CPU in cores and its
    memory (RAM) in GiB, 0 allocatable: not known."""
    report = NodeReport(
        gpus=tuple(GPU(i, f"GPU-{name}-{i}", gib * GiB, (used or {}).get(i, 0) * GiB, 0.0,
                       healthy is None or i in healthy, product) for i in range(gpus)),
        models=tuple(CachedModel(m, b, t) for m, (b, t) in (models or {}).items()),
        reported_at=datetime.fromtimestamp(NOW - reported_ago, timezone.utc))
    return NodeState(name, gpus, product, gib * 1024, report, list(allocs or []),
                     cpu_allocatable=cpu * 1000, cpu_requested=cpu_used * 1000, ram_allocatable=ram_gib * GiB,
                     ram_requested=ram_used_gib * GiB)


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


def assert_same_snapshot(got: ClusterSnapshot, want: ClusterSnapshot) -> None:
    """Two snapshots of one node list say the same of every node: each array, the models,
    the allocations, the report errors (product codes read as the products they name)."""
    import numpy as np
    assert got.names == want.names and got.now == want.now and got.stale_after_s == want.stale_after_s
    for name in ("gpu_count", "gpu_mem_total", "used", "committed", "exclusive", "healthy", "present", "reported_at",
                 "has_report", "status", "stale", "usable", "usable_total", "unhealthy_count", "memory_known", "free",
                 "whole_free", "max_free", "free_total", "partial_free", "whole_free_count", "cpu_allocatable",
                 "cpu_requested", "cpu_free", "ram_allocatable", "ram_requested", "ram_free"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
        assert not a.flags.writeable, name
    assert [got.products[c] for c in got.product_code] == [want.products[c] for c in want.product_code]
    assert dict(got.report_error) == dict(want.report_error)
    assert list(got.node_models) == list(want.node_models)
    assert [sorted(r, key=lambda a: a.pod_key) for r in got.allocations] == \
        [sorted(r, key=lambda a: a.pod_key) for r in want.allocations]
    assert sorted(got.model_cache) == sorted(want.model_cache)
    for model, cache in want.model_cache.items():
        for a, b in zip(got.model_cache[model], cache):
            assert a.dtype == b.dtype and np.array_equal(a, b), model
