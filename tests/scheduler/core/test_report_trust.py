"""A node agent's report is believed only as far as the node vouches for it: GPUs the
kubelet (device plugin) counts, plausible memory, a date not ahead of our clock."""
from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler import contract
from scheduler.core import Allocation, PodRequest
from scheduler.core import snapshot as snap
from scheduler.nodeinfo import GPU, MAX_GPU_MEMORY_MIB, MiB, ReportError, decode_gpus, vouched_gpus
from tests.scheduler.core.fixtures import GiB, filter_names, node, snapshot


def gpus(n: int, unhealthy: tuple[int, ...] = (), indices: list[int] | None = None) -> tuple[GPU, ...]:
    return tuple(GPU(i, f"GPU-{i}", 80 * GiB, 0, healthy=i not in unhealthy) for i in (indices or range(n)))


# (reported GPUs, kubelet capacity, allocatable, indices kept, healthy kept, error contains)
VOUCH = [
    (gpus(8), 8, 8, list(range(8)), list(range(8)), None),
    # GPU 3 sick: the kubelet no longer counts it allocatable (7), the agent agrees
    (gpus(8, unhealthy=(3,)), 8, 7, list(range(8)), [0, 1, 2, 4, 5, 6, 7], None),
    # fewer GPUs reported than the kubelet has: nothing over-claimed
    (gpus(4), 8, 8, [0, 1, 2, 3], [0, 1, 2, 3], None),
    # 64 GPUs on an 8-GPU node: indices 8..63 dropped
    (gpus(64), 8, 8, list(range(8)), list(range(8)), "GPU index 8 and more reported, but the node's capacity is 8"),
    (gpus(2, indices=[0, 9]), 8, 8, [0], [0], "GPU index 9 reported"),
    # 8 healthy, the kubelet allows 7: the 8th (highest index) is kept but not healthy
    (gpus(8), 8, 7, list(range(8)), list(range(7)), "8 healthy GPUs reported, but the node's allocatable"),
    # no device plugin: nothing is vouched for
    (gpus(8), 0, 0, [], [], "capacity is 0"),
    (gpus(8), 8, 0, list(range(8)), [], "allocatable nvidia.com/gpu is 0 (device plugin not running?)"),
]


@pytest.mark.parametrize("reported,capacity,allocatable,kept,healthy,error", VOUCH)
def test_vouched_gpus(reported, capacity, allocatable, kept, healthy, error):
    out, why = vouched_gpus(reported, capacity, allocatable)
    assert [g.index for g in out] == kept
    assert [g.index for g in out if g.healthy] == healthy
    if error is None:
        assert why is None and out == reported
    else:
        assert why is not None and error in why and why.startswith(contract.GPUS) and "clamped" in why


# memoryTotalMiB: 1 TiB = 1,048,576 MiB is the most one GPU may report
@pytest.mark.parametrize("mib,ok", [(81559, True), (MAX_GPU_MEMORY_MIB, True), (MAX_GPU_MEMORY_MIB + 1, False),
                                    (16 * 2**20, False)])
def test_gpu_memory_is_plausible(mib, ok):
    text = f'[{{"index":0,"memoryTotalMiB":{mib}}}]'
    if ok:
        assert decode_gpus(text)[0].memory_total == mib * MiB
    else:
        with pytest.raises(ReportError, match="memoryTotalMiB"):
            decode_gpus(text)


def test_over_claiming_report_is_clamped_and_refused_while_its_pods_still_count():
    # issue 13: a report of 64 GPUs on a node whose kubelet counts 8; a pod holds GPU 2
    liar = replace(node("liar", 64, allocs=[Allocation("ns/p", (2,), 0, whole=True)]), gpu_count=8,
                   kubelet_gpus=(8, 8))
    honest = replace(node("honest", 8), kubelet_gpus=(8, 8))
    s = snapshot(liar, honest)
    assert s.gpus == 8  # the lie did not widen every node's arrays to 64 GPUs
    assert s.status.tolist() == [snap.BAD_REPORT, snap.OK]
    assert "64 GPUs" not in s.report_error[0] and "capacity is 8" in s.report_error[0]
    assert s.exclusive[0, 2] and s.committed[0, 2] == 80 * GiB  # what is bound there still counts
    feasible, failed = filter_names(s, PodRequest(whole_gpus=1), ["liar", "honest"])
    assert feasible == ["honest"]
    assert "GPU report unreadable" in failed["liar"] and "clamped" in failed["liar"]


@pytest.mark.parametrize("ago,want,reason", [
    (-30, snap.OK, None),  # 30 s ahead: tolerated
    (-31, snap.CLOCK_SKEW, "clock skew: GPU report dated 31s in the future"),
    (-599, snap.CLOCK_SKEW, "clock skew: GPU report dated 599s in the future"),  # abs(age) <= 600 once trusted it
    (601, snap.STALE, "GPU report stale (last 601s ago)"),
])
def test_a_report_from_the_future_is_clock_skew_not_fresh(ago, want, reason):
    s = snapshot(node("n", reported_ago=ago), stale_after_s=600)
    assert s.status[0] == want
    feasible, failed = filter_names(s, PodRequest(gpu_memory=GiB), ["n"])
    if reason is None:
        assert feasible == ["n"]
    else:
        assert failed["n"].endswith(reason) or reason in failed["n"]
