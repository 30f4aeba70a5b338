"""The over-commit check of the fault suite, on hand-made pods: it must catch what it claims to."""
from __future__ import annotations

import json

from benchmarks.chaos.checks import check_gpus, extender_view_overcommit
from scheduler import contract
from scheduler.nodeinfo import MiB

GPU = 81079 * MiB
CAP = {"n1": [GPU] * 2, "n2": [GPU] * 2}


def pod(name, node, *, gpus=0, memory=None, ids=None, phase="Running", deleting=False):
    ann = {}
    if memory:
        ann[contract.GPU_MEMORY] = memory
    if ids is not None:
        ann[contract.GPU_IDS] = ids
    meta = {"name": name, "namespace": "ns", "annotations": ann}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase},
            "spec": {"nodeName": node, "containers": [{"resources": {"limits": {contract.GPU_RESOURCE: str(gpus)}}
                                                       if gpus else {}}]}}


def test_a_clean_placement_has_no_violations():
    pods = [pod("a", "n1", gpus=1, ids="0"), pod("b", "n1", memory="40Gi", ids="1"),
            pod("c", "n1", memory="39Gi", ids="1"), pod("pending", None, memory="10Gi")]
    res = check_gpus(pods, CAP)
    assert (res.bound, res.violations, res.without_ids) == (3, 0, 0)


def test_a_whole_gpu_given_twice_is_double_booked():
    res = check_gpus([pod("a", "n1", gpus=1, ids="0"), pod("b", "n1", gpus=1, ids="0")], CAP)
    assert list(res.double_booked) == ["n1/gpu0"] and "ns/a and ns/b" in res.double_booked["n1/gpu0"]


def test_a_share_on_a_whole_gpu_is_double_booked():
    res = check_gpus([pod("a", "n1", gpus=1, ids="1"), pod("b", "n1", memory="1Gi", ids="1")], CAP)
    assert list(res.double_booked) == ["n1/gpu1"]


def test_shares_over_a_gpus_memory_are_double_booked():
    # 40 + 40 GiB = 81,920 MiB > 81,079 MiB
    res = check_gpus([pod("a", "n2", memory="40Gi", ids="0"), pod("b", "n2", memory="40Gi", ids="0")], CAP)
    assert list(res.double_booked) == ["n2/gpu0"] and "81920 MiB of 81079 MiB" in res.double_booked["n2/gpu0"]


def test_a_gpu_the_node_does_not_have():
    assert list(check_gpus([pod("a", "n1", gpus=1, ids="5")], CAP).double_booked) == ["n1/gpu5"]


def test_pods_without_ids_count_against_their_node():
    # bound by kube-scheduler alone: no GPU ids; 5 x 40 GiB = 200 GiB on a node of 2 x 79 GiB
    res = check_gpus([pod(f"s{i}", "n1", memory="40Gi") for i in range(5)], CAP)
    assert res.without_ids == 5 and list(res.node_overcommit) == ["n1"] and not res.double_booked
    res = check_gpus([pod(f"w{i}", "n2", gpus=1) for i in range(3)], CAP)
    assert res.node_overcommit == {"n2": "3 whole GPUs bound, node has 2"}


def test_finished_and_deleting_pods_hold_nothing():
    pods = [pod("a", "n1", gpus=1, ids="0"), pod("b", "n1", gpus=1, ids="0", phase="Succeeded"),
            pod("c", "n1", gpus=1, ids="0", deleting=True)]
    assert check_gpus(pods, CAP).violations == 0


def test_the_extenders_own_view():
    view = {"node": "n1", "gpus": [{"index": 0, "committedMiB": 90000, "totalMiB": 81079},
                                   {"index": 1, "committedMiB": 81079, "totalMiB": 81079}]}
    assert extender_view_overcommit(json.loads(json.dumps(view))) == ["n1/gpu0: 90000 of 81079 MiB"]
