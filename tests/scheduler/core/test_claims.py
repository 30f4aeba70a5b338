"""ResourceClaims to held GPU memory: what kube-scheduler's DRA allocator gave claims of
gpu.gpusched.io, counted on the node report's GPU of each device's UUID. Rows show the
arithmetic: committed MiB per GPU after the claims, against 80 GiB (81920 MiB) GPUs."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from scheduler import contract
from scheduler.core.claims import allocations_on, claim_held
from scheduler.core.objects import node_state_of, snapshot_of
from scheduler.nodeinfo import GPU, NodeReport, annotations_for

GiB, MiB = 2**30, 2**20
NOW = datetime(2026, 12, 6, 6, 0, tzinfo=timezone.utc)
TOTAL = 80 * GiB  # 81920 MiB per GPU


def uuid(node: str, i: int) -> str:
    """An NVML-form UUID per (node, GPU): GPU-0000000<n>-0000-0000-0000-00000000000<i>."""
    return f"GPU-{int(node[-1]):08x}-0000-0000-0000-{i:012x}"


def dev(node: str, i: int) -> str:
    return uuid(node, i).lower()  # the agent's device name (scheduler/agent/dra/devices.py)


def node(name: str, gpus: int = 4) -> dict:
    report = NodeReport(gpus=tuple(GPU(i, uuid(name, i), TOTAL, 0) for i in range(gpus)), reported_at=NOW)
    res = {contract.GPU_RESOURCE: str(gpus)}
    return {"metadata": {"name": name, "annotations": annotations_for(report)},
            "status": {"allocatable": res, "capacity": res}}


def on(n: str) -> dict:
    return {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}]}


def result(pool: str, device: str, memory: str | None = None, driver: str = contract.DRA_DRIVER) -> dict:
    r: dict = {"request": "gpu", "driver": driver, "pool": pool, "device": device}
    if memory is not None:
        r["consumedCapacity"] = {"memory": memory}
    return r


def claim(name: str, *results: dict, selector: dict | None | str = "auto") -> dict:
    alloc: dict = {"devices": {"results": list(results)}}
    if selector == "auto" and results:
        alloc["nodeSelector"] = on(results[0]["pool"])
    elif isinstance(selector, dict):
        alloc["nodeSelector"] = selector
    return {"metadata": {"namespace": "t", "name": name}, "status": {"allocation": alloc}}


N1, N2 = "node-1", "node-2"

# (id, claims, committed MiB of node-1's GPUs 0..3, exclusive GPUs of node-1, problems)
ROWS = [
    ("20Gi share of GPU 3", [claim("a", result(N1, dev(N1, 3), "20Gi"))],
     [0, 0, 0, 20480], [], 0),
    ("two shares on GPU 3: 20Gi + 30Gi = 50Gi", [claim("a", result(N1, dev(N1, 3), "20Gi")),
                                                 claim("b", result(N1, dev(N1, 3), "30Gi"))],
     [0, 0, 0, 51200], [], 0),
    ("one claim, two devices: GPU 0 10Gi, GPU 1 5Gi", [claim("a", result(N1, dev(N1, 0), "10Gi"),
                                                             result(N1, dev(N1, 1), "5Gi"))],
     [10240, 5120, 0, 0], [], 0),
    ("whole device, no consumedCapacity: all 81920 MiB, exclusive", [claim("w", result(N1, dev(N1, 2)))],
     [0, 0, 81920, 0], [2], 0),
    ("whole device as the allocator writes it: consumed = capacity (>= total) is whole",
     [claim("w", result(N1, dev(N1, 1), str(TOTAL + 3 * MiB // 2)))], [0, 81920, 0, 0], [1], 0),
    ("device in bytes: 1073741824 = 1024 MiB", [claim("a", result(N1, dev(N1, 0), "1073741824"))],
     [1024, 0, 0, 0], [], 0),
    ("another driver's claim is not ours: nothing", [claim("n", result(N1, dev(N1, 0), "20Gi",
                                                                       driver="gpu.nvidia.com"))],
     [0, 0, 0, 0], [], 0),
    ("not allocated: nothing", [{"metadata": {"namespace": "t", "name": "p"}, "status": {}}],
     [0, 0, 0, 0], [], 0),
    ("node-2's claim counts on node-2, not here", [claim("x", result(N2, dev(N2, 0), "70Gi"))],
     [0, 0, 0, 0], [], 0),
    # hostile or broken: left uncounted, said in the problems, never raised
    ("unknown device (UUID not in the report)", [claim("u", result(N1, "gpu-deadbeef-0000-0000-0000-000000000000",
                                                                    "20Gi"))], [0, 0, 0, 0], [], 1),
    ("node-2's GPU in node-1's pool", [claim("u", result(N1, dev(N2, 0), "20Gi"))], [0, 0, 0, 0], [], 1),
    ("pool of another node than the nodeSelector", [claim("u", result(N2, dev(N2, 0), "20Gi"), selector=on(N1))],
     [0, 0, 0, 0], [], 1),
    ("absurd quantity: 2Pi", [claim("u", result(N1, dev(N1, 0), "2Pi"))], [0, 0, 0, 0], [], 1),
    ("negative quantity", [claim("u", result(N1, dev(N1, 0), "-20Gi"))], [0, 0, 0, 0], [], 1),
    ("not a quantity", [claim("u", result(N1, dev(N1, 0), "lots"))], [0, 0, 0, 0], [], 1),
    ("consumedCapacity not a map", [claim("u", dict(result(N1, dev(N1, 0)), consumedCapacity=["20Gi"]))],
     [0, 0, 0, 0], [], 1),
    ("nodeSelector naming two nodes", [claim("u", result(N1, dev(N1, 0), "20Gi"), selector={"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [N1, N2]}]}]})],
     [0, 0, 0, 0], [], 1),
    ("no nodeSelector: the pool names the node", [claim("a", result(N1, dev(N1, 3), "20Gi"), selector=None)],
     [0, 0, 0, 20480], [], 0),
    ("one bad device of two: the good one counts", [claim("a", result(N1, dev(N1, 0), "10Gi"),
                                                          result(N1, "gpu-bogus", "20Gi"))],
     [10240, 0, 0, 0], [], 1),
    ("garbage results", [{"metadata": {"name": "g"}, "status": {"allocation": {"devices": {"results": "x"}}}},
                         {"status": {"allocation": {"devices": {"results": [7, None, {"driver": None}]}}}},
                         "not a claim"],
     [0, 0, 0, 0], [], 2),
]


def _problems(claims: list) -> int:
    count = 0
    states = {n["metadata"]["name"]: node_state_of(n) for n in (node(N1), node(N2))}
    for c in claims:
        held, problems = claim_held(c)
        count += bool(problems)
        if held is not None:
            count += bool(allocations_on(held, states.get(held.node))[1]) and not problems
    return count


@pytest.mark.parametrize("claims,committed_mib,exclusive,problems", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_claims_are_held_gpu_memory(claims, committed_mib, exclusive, problems):
    snap = snapshot_of([node(N1), node(N2)], [], now=NOW.timestamp(), stale_after_s=600, claims=claims)
    row = snap.index[N1]
    assert [int(m) >> 20 for m in snap.committed[row, :4]] == committed_mib
    assert [g for g in range(4) if snap.exclusive[row, g]] == exclusive
    assert _problems(claims) == problems


def test_a_share_that_would_not_fit_beside_a_claim_finds_no_gpu():
    """20Gi of a lone 80Gi GPU held by a claim: 60Gi is free there, so 70Gi does not fit and 60Gi does."""
    snap = snapshot_of([node(N1, gpus=1)], [], now=NOW.timestamp(), stale_after_s=600,
                       claims=[claim("a", result(N1, dev(N1, 0), "20Gi"))])
    assert int(snap.free[snap.index[N1], 0]) == 60 * GiB


def test_node2_claim_counts_on_node2():
    snap = snapshot_of([node(N1), node(N2)], [], now=NOW.timestamp(), stale_after_s=600,
                       claims=[claim("x", result(N2, dev(N2, 0), "70Gi"))])
    assert int(snap.committed[snap.index[N2], 0]) == 70 * GiB
    [a] = snap.allocations[snap.index[N2]]
    assert (a.pod_key, a.gpu_ids, a.whole) == ("claim:t/x#0", (0,), False)
