from __future__ import annotations

import pytest

from scheduler.core import PodRequest, assign_gpus
from tests.scheduler.core.fixtures import GiB, node, share, snapshot, whole


@pytest.mark.parametrize("allocs,req,want_ids,why", [
    # 80 GiB GPUs. A 40 GiB share goes best-fit: GPU 2 has 80-30=50 free (10 left after),
    # GPU 1 has 80-20=60 (20 left), the rest 80 (40 left): GPU 2.
    ([share("a", 1, 20), share("b", 2, 30)], PodRequest(gpu_memory=40 * GiB), (2,), "best fit"),
    # GPU 2 has 80-50=30 free < 40: the next tightest is GPU 1 (60 free)
    ([share("a", 1, 20), share("b", 2, 50)], PodRequest(gpu_memory=40 * GiB), (1,), "best fit"),
    # equal leftovers break by index: all GPUs empty -> GPU 0
    ([], PodRequest(gpu_memory=10 * GiB), (0,), "best fit"),
    # 2 whole GPUs: GPU 0 holds a share and GPU 1 is given whole, so the lowest free are 2 and 3
    ([share("a", 0, 5), whole("w", 1)], PodRequest(whole_gpus=2), (2, 3), "whole GPU"),
    # 8 whole on a node with one share: impossible
    ([share("a", 0, 5)], PodRequest(whole_gpus=8), None, "has 7 free whole GPUs, pod needs 8"),
    # every GPU holds 50 GiB: 30 free each, a 40 GiB share does not fit
    ([share(f"p{i}", i, 50) for i in range(8)], PodRequest(gpu_memory=40 * GiB), None, "largest 30Gi"),
])
def test_assign(allocs, req, want_ids, why):
    s = snapshot(node("n", allocs=allocs))
    a = assign_gpus(s, "n", req)
    assert a.gpu_ids == want_ids
    assert why in a.reason


def test_unknown_node():
    assert assign_gpus(snapshot(node("n")), "other", PodRequest(whole_gpus=1)).gpu_ids is None


def test_back_to_back_allocations_never_share_memory():
    # two 50 GiB shares on one 80 GiB GPU node with 1 GPU: the second must find no room
    s = snapshot(node("n", gpus=1))
    req = PodRequest(gpu_memory=50 * GiB)
    first = assign_gpus(s, "n", req)
    s2 = s.with_allocation("n", share("p1", first.gpu_ids[0], 50))
    assert assign_gpus(s2, "n", req).gpu_ids is None
    assert assign_gpus(s, "n", req).gpu_ids == (0,)  # the old snapshot is unchanged (copy-on-write)
    s3 = s2.without_allocation("n", "ns/none").without_allocation("n", "p1")
    assert assign_gpus(s3, "n", req).gpu_ids == (0,)
