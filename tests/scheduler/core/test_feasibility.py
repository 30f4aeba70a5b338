from __future__ import annotations

import pytest

from scheduler.core import NodeState, PodRequest, assign_gpus
from scheduler.nodeinfo import NodeReport
from tests.scheduler.core.fixtures import GiB, filter_names, node, score_names, share, snapshot, whole

H100 = "NVIDIA-H100-80GB-HBM3"


@pytest.mark.parametrize("n,req,reason", [
    # 4 x 80 GiB, GPU 0 half used: a 40 GiB share fits on GPU 0 (40 free) or 1..3 (80)
    (node("n", 4, allocs=[share("a", 0, 40)]), PodRequest(gpu_memory=40 * GiB), None),
    # every GPU holds 60 GiB: 20 free each < 40
    (node("n", 2, allocs=[share("a", 0, 60), share("b", 1, 60)]), PodRequest(gpu_memory=40 * GiB),
     "gpusched: no GPU has 40Gi free (largest free 20Gi)"),
    # the agent sees 70 GiB in use on GPU 0 though only 40 were committed: free 80 - max(40, 70) = 10
    (node("n", 1, used={0: 70}, allocs=[share("a", 0, 40)]), PodRequest(gpu_memory=20 * GiB),
     "gpusched: no GPU has 20Gi free (largest free 10Gi)"),
    # 2 whole GPUs wanted; GPU 0 shared, GPUs 1..3 untouched: 3 >= 2
    (node("n", 4, allocs=[share("a", 0, 1)]), PodRequest(whole_gpus=2), None),
    # GPUs 0, 1 whole-allocated, 2 shared: only GPU 3 is whole-free
    (node("n", 4, allocs=[whole("a", 0, 1), share("b", 2, 1)]), PodRequest(whole_gpus=2),
     "gpusched: needs 2 free whole GPUs, node has 1"),
    # whole GPUs with a memory floor: 40 GiB GPUs are too small for >= 80 GiB
    (node("n", 4, gib=40), PodRequest(whole_gpus=2, gpu_memory=80 * GiB),
     "gpusched: needs 2 free whole GPUs with >= 80Gi, node has 0"),
    # unhealthy GPUs are never used, and the reason says how many there are: 4 - 3 sick = 1
    (node("n", 4, healthy={0}), PodRequest(whole_gpus=2),
     "gpusched: needs 2 free whole GPUs, node has 1 (3 unhealthy)"),
    # only the unhealthy GPU 1 has room for the share: 80 free on it does not count
    (node("n", 2, healthy={0}, allocs=[share("a", 0, 70)]), PodRequest(gpu_memory=40 * GiB),
     "gpusched: no GPU has 40Gi free (largest free 10Gi) (1 unhealthy)"),
    # reported 312 s ago, trusted for 60 s
    (node("n", reported_ago=312), PodRequest(whole_gpus=1), "gpusched: GPU report stale (last 312s ago)"),
    # a clock 900 s ahead is as suspect as an old report
    (node("n", reported_ago=-900), PodRequest(whole_gpus=1), "clock skew: GPU report dated 900s in the future"),
    (node("n", product="H100-SXM"), PodRequest(whole_gpus=1, products=frozenset({"A100"})),
     "gpusched: GPU product H100-SXM not in [A100]"),
    # globs match the GPU feature discovery names
    (node("n"), PodRequest(whole_gpus=1, products=frozenset({"NVIDIA-H100*"})), None),
    (node("n", 0), PodRequest(whole_gpus=1), "gpusched: node has no GPUs"),
    # no agent: the device plugin's count and the GFD memory label (40960 MiB = 40 GiB) stand in
    (NodeState("n", 2, "A100", 40960), PodRequest(gpu_memory=40 * GiB), None),
    (NodeState("n", 2, "A100", 40960), PodRequest(gpu_memory=41 * GiB),
     "gpusched: no GPU has 41Gi free (largest free 40Gi)"),
    # no agent and no memory label: whole GPUs yes, shares no
    (NodeState("n", 2, "A100", 0), PodRequest(whole_gpus=2), None),
    (NodeState("n", 2, "A100", 0), PodRequest(gpu_memory=GiB), "GPU memory unknown"),
    # an unreadable report is not trusted at all
    (NodeState("n", 8, H100, 81920, NodeReport(errors=("gpusched.io/gpus: not JSON (x)",))),
     PodRequest(whole_gpus=1), "gpusched: GPU report unreadable (gpusched.io/gpus: not JSON (x))"),
])
def test_filter_one_node(n, req, reason):
    feasible, failed = filter_names(snapshot(n, stale_after_s=60), req, ["n"])
    if reason is None:
        assert (feasible, failed) == (["n"], {})
    else:
        assert feasible == [] and reason in failed["n"], failed


def test_non_gpu_pods_pass_everywhere():
    s = snapshot(node("a", reported_ago=10_000), stale_after_s=60)
    assert filter_names(s, PodRequest(), ["a", "ghost"]) == (["a", "ghost"], {})


def test_unknown_node_and_order_kept():
    s = snapshot(node("a"), node("b"), node("c", 0))
    feasible, failed = filter_names(s, PodRequest(whole_gpus=1), ["b", "ghost", "c", "a"])
    assert feasible == ["b", "a"]
    assert failed == {"ghost": "gpusched: node unknown to gpusched (not in snapshot yet)",
                      "c": "gpusched: node has no GPUs"}


def test_reasons_are_per_node_when_grouped():
    # two nodes share one message, a third has its own: grouping must not mix them up
    s = snapshot(node("a", 1, allocs=[share("x", 0, 60)]), node("b", 1, allocs=[share("y", 0, 60)]),
                 node("c", 1, allocs=[share("z", 0, 70)]))
    _, failed = filter_names(s, PodRequest(gpu_memory=40 * GiB), ["a", "b", "c"])
    assert failed == {"a": "gpusched: no GPU has 40Gi free (largest free 20Gi)",
                      "b": "gpusched: no GPU has 40Gi free (largest free 20Gi)",
                      "c": "gpusched: no GPU has 40Gi free (largest free 10Gi)"}


def test_empty_snapshot():
    s = snapshot()
    assert filter_names(s, PodRequest(whole_gpus=1), ["a"]) == (
        [], {"a": "gpusched: node unknown to gpusched (not in snapshot yet)"})


def test_5000_nodes_consistent():
    """Shape and consistency at the size the extender must serve (timing is the benchmarks' job)."""
    nodes = []
    for i in range(5000):
        if i % 7 == 0:
            nodes.append(node(f"n{i}", 8, allocs=[whole(f"w{i}", *range(8))]))  # full
        elif i % 5 == 0:
            nodes.append(node(f"n{i}", 8, allocs=[share(f"s{i}", g, 50) for g in range(8)]))  # 30 GiB holes
        elif i % 11 == 0:
            nodes.append(node(f"n{i}", 8, reported_ago=10_000))  # stale
        else:
            nodes.append(node(f"n{i}", 8, allocs=[share(f"s{i}", i % 8, 40)]))
    s = snapshot(*nodes)
    names = [n.name for n in nodes] + ["ghost"]
    for req in (PodRequest(gpu_memory=40 * GiB), PodRequest(gpu_memory=20 * GiB), PodRequest(whole_gpus=4)):
        feasible, failed = filter_names(s, req, names)
        assert set(feasible).isdisjoint(failed) and set(feasible) | set(failed) == set(names)
        assert all(v.startswith("gpusched: ") for v in failed.values())
        assert "ghost" in failed and "n0" in failed and "n11" in failed  # unknown, full, stale
        scores, _ = score_names(s, req, feasible)
        assert [h for h, _ in scores] == feasible and all(0 <= v <= 10 for _, v in scores)
        best = max(scores, key=lambda hv: hv[1])[0]
        assert assign_gpus(s, best, req).gpu_ids
        # every feasible node can really be assigned; no infeasible one can
        rows = s.indices(feasible)
        assert (s.max_free[rows] >= req.gpu_memory).all() if not req.whole_gpus else \
            (s.whole_free_count[rows] >= req.whole_gpus).all()
