"""The rule for pods asking GPU memory by ResourceClaim: a node passes only when every device
kube-scheduler's allocator could pick (slice capacity - claims) is free in gpusched's
accounting too (claims + annotation shares). Rows show the arithmetic on 80 GiB devices."""
from __future__ import annotations

import numpy as np
import pytest

from scheduler import contract
from scheduler.core.claim_fit import (FITS, HELD_ON_DEVICE, NO_DEVICE, SHARES_ON_DEVICE, NodeDevices,
                                      claim_demand, fit_claims, fit_reason, overcommit, pod_claims, slice_devices)
from scheduler.core.snapshot import Allocation

GiB = 2**30
CAP = 80 * GiB


def devices(*rows: list[tuple[int, int, bool]], multiple: bool = True) -> NodeDevices:
    """Rows of (claimed GiB as the allocator counts, gpusched free GiB, gpusched whole-free) per device."""
    width = max(len(r) for r in rows)
    shape = (len(rows), width)
    d = {k: np.zeros(shape, t) for k, t in (("present", bool), ("capacity", np.int64), ("multiple", bool),
                                            ("claimed", np.int64), ("free", np.int64), ("whole_free", bool))}
    for i, r in enumerate(rows):
        for j, (claimed, free, whole) in enumerate(r):
            d["present"][i, j], d["capacity"][i, j], d["multiple"][i, j] = True, CAP, multiple
            d["claimed"][i, j], d["free"][i, j], d["whole_free"][i, j] = claimed * GiB, free * GiB, whole
    return NodeDevices(**d)


# (id, asks in GiB (None: whole), devices (claimed, gpusched free, whole free), fits, why, column)
ROWS = [
    # 80 - 0 claimed = 80 seen; gpusched free 80: whatever the allocator picks is free
    ("empty device", [20], [(0, 80, True)], True, FITS, 0),
    # device 0: seen 80 >= 20, gpusched free 70 (a 10Gi annotation share) >= 20: fine
    ("share beside an annotation share that leaves room", [20], [(0, 70, False)], True, FITS, 0),
    # device 1: seen 80 >= 20 but gpusched free 10 (70Gi of annotation shares): the allocator may pick it
    ("allocator could pick a device full of shares", [20], [(0, 80, True), (0, 10, False)], False,
     SHARES_ON_DEVICE, 1),
    # device 1: claims hold 70 -> seen 10 < 20: the allocator cannot pick it, whatever gpusched's free
    ("device the allocator sees full is not a candidate", [20], [(0, 80, True), (70, 10, False)], True, FITS, 0),
    # both asks could land on device 0 (seen 80 >= 20 + 30): gpusched needs 50 free there, has 40
    ("two asks may share a device: their sum counts", [20, 30], [(0, 40, False), (0, 80, True)], False,
     SHARES_ON_DEVICE, 0),
    # seen 25 on device 0 (55 claimed): min(25, 20 + 30) = 25 could land there; gpusched has 25
    ("what lands is capped by what the allocator sees free", [20, 30], [(55, 25, False), (0, 80, True)], True,
     FITS, 0),
    # whole: device 1 unclaimed to the allocator, but gpusched holds a 10Gi share there
    ("whole device over an annotation share", [None], [(0, 80, True), (0, 70, False)], False, HELD_ON_DEVICE, 1),
    ("whole device, claimed devices are no candidates", [None], [(0, 80, True), (20, 60, False)], True, FITS, 0),
    # every device seen with 10 free: 20 fits nowhere in this view, so the allocator's differs
    ("no device fits in this view", [20], [(70, 10, False), (75, 5, False)], False, NO_DEVICE, 0),
]


@pytest.mark.parametrize("asks,devs,fits,why,column", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_fit(asks, devs, fits, why, column):
    ok, code, col = fit_claims([None if a is None else a * GiB for a in asks], devices(devs))
    assert (bool(ok[0]), int(code[0])) == (fits, why)
    if not fits and why != NO_DEVICE:
        assert int(col[0]) == column


def test_rows_are_independent_and_padding_is_not_a_device():
    ok, _, _ = fit_claims([20 * GiB], devices([(0, 80, True)], [(0, 80, True), (0, 0, False)], [(0, 80, True)]))
    assert ok.tolist() == [True, False, True]


def test_device_without_multiple_allocations_is_taken_whole():
    # a 20Gi ask on an unclaimed single-allocation device takes all of it: gpusched must hold nothing there
    ok, code, _ = fit_claims([20 * GiB], devices([(0, 70, False)], multiple=False))
    assert (bool(ok[0]), int(code[0])) == (False, HELD_ON_DEVICE)


def test_reason_names_device_gpu_and_both_views():
    text = fit_reason(SHARES_ON_DEVICE, [20 * GiB], "gpu-abc", 1, 80 * GiB, 10 * GiB)
    assert text == ("gpusched: kube-scheduler's allocator could give 20Gi device gpu-abc (GPU 1) (80Gi free to it), "
                    "but only 10Gi is free after gpusched's annotation shares")


def req(**exactly) -> dict:
    return {"name": "gpu", "exactly": {"deviceClassName": contract.DRA_DRIVER, **exactly}}


def unallocated(*requests: dict) -> dict:
    return {"metadata": {"namespace": "t", "name": "c"}, "spec": {"devices": {"requests": list(requests)}}}


# (id, claim, asks in GiB or the start of the problem)
DEMANDS = [
    ("share", unallocated(req(capacity={"requests": {"memory": "20Gi"}})), [20]),
    ("whole device", unallocated(req()), [None]),
    ("count 2 of 10Gi", unallocated(req(count=2, capacity={"requests": {"memory": "10Gi"}})), [10, 10]),
    ("other class", unallocated({"name": "x", "exactly": {"deviceClassName": "gpu.nvidia.com"}}), None),
    ("allocated: nothing new to pick", {**unallocated(req()), "status": {"allocation": {}}}, None),
    ("All", unallocated(req(allocationMode="All")), "request 0: allocationMode 'All'"),
    ("adminAccess", unallocated(req(adminAccess=True)), "request 0: adminAccess"),
    ("firstAvailable", unallocated({"name": "x", "firstAvailable": [{"name": "a",
                                    "deviceClassName": contract.DRA_DRIVER}]}), "request 0: firstAvailable"),
    ("absurd memory", unallocated(req(capacity={"requests": {"memory": "9Pi"}})), "request 0 memory"),
    ("count 0", unallocated(req(count=0)), "request 0: count must be"),
]


@pytest.mark.parametrize("claim,expected", [r[1:] for r in DEMANDS], ids=[r[0] for r in DEMANDS])
def test_claim_demand(claim, expected):
    demand, problem = claim_demand(claim)
    if isinstance(expected, str):
        assert demand is None and problem is not None and problem.startswith(expected), problem
    elif expected is None:
        assert (demand, problem) == (None, None)
    else:
        assert problem is None and demand is not None
        assert demand.key == "claim:t/c" and demand.asks == tuple(None if a is None else a * GiB for a in expected)


def test_slice_devices():
    s = {"spec": {"driver": contract.DRA_DRIVER, "nodeName": "n1", "devices": [
        {"name": "gpu-a", "capacity": {"memory": {"value": "85017493504"}}, "allowMultipleAllocations": True},
        {"name": "gpu-b", "capacity": {"memory": {"value": "lots"}}}]}}
    node, devs, problems = slice_devices(s)
    assert node == "n1" and [(d.name, d.capacity, d.multiple) for d in devs] == [
        ("gpu-a", 85017493504, True), ("gpu-b", 2**40, False)]  # unreadable: the most any GPU may have
    assert len(problems) == 1
    assert slice_devices({"spec": {"driver": "gpu.nvidia.com", "nodeName": "n1"}})[0] is None


@pytest.mark.parametrize("pod,names,problem", [
    ({"spec": {}}, (), None),
    ({"spec": {"resourceClaims": [{"name": "gpu", "resourceClaimName": "mine"}]}}, ("mine",), None),
    ({"spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}]},
      "status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "p-gpu-x7"}]}}, ("p-gpu-x7",), None),
    ({"spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}]}}, (),
     "the ResourceClaim of 'gpu' is not made yet"),
    # hostile status entries are skipped, never a crash
    ({"spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}]},
      "status": {"resourceClaimStatuses": [{"name": ["x"]}, "y", {"name": "gpu", "resourceClaimName": 7}]}}, (), None),
])
def test_pod_claims(pod, names, problem):
    assert pod_claims(pod) == (names, problem)


# (id, the claim's allocations, the node's allocations, problem or None); GPUs of 80 GiB
OVER = [
    ("share beside share, room left", [Allocation("claim:t/c#1", (1,), 20 * GiB, False)],
     [Allocation("t/share", (1,), 60 * GiB, False)], None),
    # 70 + 20 = 90 > 80
    ("share over shares", [Allocation("claim:t/c#1", (1,), 20 * GiB, False)],
     [Allocation("t/share", (1,), 70 * GiB, False), Allocation("claim:t/c#1", (1,), 20 * GiB, False)],
     "GPU 1 holds 70Gi of 80Gi for others, the claim consumes 20Gi"),
    ("whole over a share", [Allocation("claim:t/c#0", (0,), CAP, True)], [Allocation("t/share", (0,), GiB, False)],
     "GPU 0 holds 1Gi of 80Gi for others, the claim wants it whole"),
    ("own allocation not counted twice", [Allocation("claim:t/c#0", (0,), CAP, True)],
     [Allocation("claim:t/c#0", (0,), CAP, True)], None),
]


@pytest.mark.parametrize("mine,node,problem", [r[1:] for r in OVER], ids=[r[0] for r in OVER])
def test_overcommit(mine, node, problem):
    assert overcommit(mine, node, {0: CAP, 1: CAP}, "claim:t/c#") == problem


GARBAGE = [None, 7, "x", [], {}, {"spec": []}, {"spec": {"devices": {"requests": [7, None]}}},
           {"spec": {"devices": {"requests": [{"exactly": {"deviceClassName": contract.DRA_DRIVER, "count": "2"}}]}}},
           {"spec": {"devices": {"requests": [{"exactly": {"deviceClassName": contract.DRA_DRIVER,
                                                           "capacity": {"requests": {"memory": ["1Gi"]}}}}]}}},
           {"spec": {"driver": contract.DRA_DRIVER, "nodeName": "n", "devices": [None, {"name": 3},
                                                                                {"name": "d", "capacity": 5}]}}]


@pytest.mark.parametrize("thing", GARBAGE)
def test_garbage_is_a_reason_never_a_crash(thing):
    demand, problem = claim_demand(thing)
    assert demand is None
    slice_devices(thing)
    pod_claims(thing)
