"""ResourceClaims to held GPU memory: what kube-scheduler's DRA allocator gave claims of
gpu.gpusched.io, counted on the node report's GPU of each device's UUID. Rows show the
arithmetic: committed MiB per GPU after the claims, against 80 GiB (81920 MiB) GPUs."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from scheduler import contract
from scheduler.core import claims as claims_mod
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


# ---- allocated_nodes: the nodes a claim keeps nvidia.com/gpu pods off (scheduler/core/beside_claims.py),
# read even where claim_held cannot count the claim: fail closed wherever the node can be told

OURS_SPEC = {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": contract.DRA_DRIVER}}]}}
OTHER_SPEC = {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}]}}


def raw(allocation: object, spec: dict | None = None) -> dict:
    """A claim with `allocation` as its status.allocation, whatever its shape."""
    c: dict = {"metadata": {"namespace": "t", "name": "r"}, "status": {"allocation": allocation}}
    if spec is not None:
        c["spec"] = spec
    return c


def bare(pool: object = "", device: object = "", driver: object = contract.DRA_DRIVER, **extra: object) -> dict:
    r = {"request": "gpu", "driver": driver, "pool": pool, "device": device, **extra}
    return {k: v for k, v in r.items() if v is not None}


D = dev(N1, 0)
SEL1 = on(N1)
SEL12 = {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [N1, N2]}]}]}
NONE, NO = (), claims_mod.NO_NODE

# (id, claim, nodes it marks, problem; what claim_held counts it on: node or None)
NODE_ROWS = [
    ("well formed: the selector's node", claim("a", result(N1, D, "20Gi")), (N1,), None, N1),
    ("no selector: the pool", claim("a", result(N1, D, "20Gi"), selector=None), (N1,), None, N1),
    # (a): not counted, yet its node is told
    ("result without a pool, selector N1", raw({"devices": {"results": [bare(None, D)]}, "nodeSelector": SEL1}),
     (N1,), None, None),
    ("result without a device name, no selector: the pool", raw({"devices": {"results": [bare(N1, None)]}}),
     (N1,), None, None),
    ("empty pool, selector N1", raw({"devices": {"results": [bare("", D)]}, "nodeSelector": SEL1}), (N1,), None, None),
    ("pool of another node than the selector: both (the pod's node, the GPU's)",
     claim("u", result(N2, dev(N2, 0), "20Gi"), selector=SEL1), (N1, N2), None, None),
    ("unreadable consumedCapacity, selector N1", claim("u", result(N1, D, "lots")), (N1,), None, None),
    ("selector naming two nodes: both", claim("u", result(N1, D, "20Gi"), selector=SEL12), (N1, N2), None, None),
    ("selector by matchExpressions only: the pool", claim("u", result(N1, D, "20Gi"), selector={
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                                     "values": [N2]}]}]}), (N1,), None, None),
    ("devices not a list, spec of our class, selector N1", raw({"devices": "x", "nodeSelector": SEL1}, OURS_SPEC),
     (N1,), None, None),
    ("results entry without a driver, spec ours: its pool", raw({"devices": {"results": [bare(N2, D, None)]}},
                                                                OURS_SPEC), (N2,), None, None),
    ("hostile selector values: only node names kept", raw({"devices": {"results": [bare(None, D)]}, "nodeSelector": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": [7, "", "x" * 300, N2]}]}, "junk"]}}), (N2,), None, None),
    # ours and allocated, but nothing names a node: marks nothing, said
    ("no pool, no selector", raw({"devices": {"results": [bare(None, D)]}}), NONE, NO, None),
    ("devices not a list, spec ours, no selector", raw({"devices": "x"}, OURS_SPEC), NONE, NO, None),
    ("allocation not an object, spec ours", raw(["x"], OURS_SPEC), NONE, NO, None),
    ("selector with no node name, no pool", raw({"devices": {"results": [bare(None, D)]}, "nodeSelector": {}}),
     NONE, NO, None),
    # not ours, or nothing allocated: marks nothing, nothing to say
    ("another driver's result", claim("n", result(N1, D, "20Gi", driver="gpu.nvidia.com")), NONE, None, None),
    ("devices not a list, spec of another class", raw({"devices": "x", "nodeSelector": SEL1}, OTHER_SPEC),
     NONE, None, None),
    ("devices not a list, no spec", raw({"devices": "x", "nodeSelector": SEL1}), NONE, None, None),
    ("not allocated", {"metadata": {"name": "p"}, "status": {}}, NONE, None, None),
    ("allocation null", raw(None, OURS_SPEC), NONE, None, None),
    ("not a claim", "not a claim", NONE, None, None),
]


@pytest.mark.parametrize("c,nodes,problem,counted_on", [r[1:] for r in NODE_ROWS], ids=[r[0] for r in NODE_ROWS])
def test_allocated_nodes(c, nodes, problem, counted_on):
    assert claims_mod.allocated_nodes(c) == (nodes, problem)
    held, _ = claim_held(c)
    assert (held.node if held else None) == counted_on


LEAF = st.none() | st.booleans() | st.integers(-1, 3) | st.sampled_from(
    [N1, N2, "", contract.DRA_DRIVER, "gpu.nvidia.com", "metadata.name", "In", "gpu", D, "20Gi", "lots"])
CLAIM_JSON = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["devices", "results", "pool", "driver", "device", "nodeSelector", "nodeSelectorTerms",
                     "matchFields", "key", "operator", "values", "consumedCapacity", "memory", "requests",
                     "exactly", "deviceClassName"]), inner, max_size=4), max_leaves=12)
# shapes near a real allocation, so that some are counted and some marked: each field its
# well-formed value three times in four, else any JSON in its place


def near(*good: object) -> st.SearchStrategy:
    return st.one_of(*(st.just(g) for g in good for _ in range(3)), LEAF)


RESULT = st.fixed_dictionaries({
    "request": near("gpu"), "driver": near(contract.DRA_DRIVER, "gpu.nvidia.com"), "pool": near(N1, N2),
    "device": near(D)}, optional={"consumedCapacity": near({"memory": "20Gi"}, {"memory": "lots"})})
SELECTOR = near(on(N1), on(N2))
NEAR = st.fixed_dictionaries({"devices": st.fixed_dictionaries(
    {"results": st.lists(RESULT | CLAIM_JSON, min_size=1, max_size=3) | CLAIM_JSON}) | CLAIM_JSON},
    optional={"nodeSelector": SELECTOR})
ALLOCATION = NEAR | CLAIM_JSON
SPEC = st.just(OURS_SPEC) | st.just(OTHER_SPEC) | CLAIM_JSON


def any_claim(allocation: object, spec: object) -> dict:
    return {"metadata": {"namespace": "t", "name": "f"}, "spec": spec, "status": {"allocation": allocation}}


@settings(max_examples=600, derandomize=True, deadline=None)
@given(allocation=ALLOCATION, spec=SPEC)
def test_any_shape_is_read_without_a_crash_and_marks_where_it_counts(allocation, spec):
    c = any_claim(allocation, spec)
    nodes, problem = claims_mod.allocated_nodes(c)
    assert all(isinstance(n, str) and n for n in nodes) and (problem is None or not nodes)
    held, _ = claim_held(c)
    assert held is None or held.node in nodes  # whatever gpusched counts, it also keeps plugin pods off


@pytest.mark.parametrize("what,found", [
    ("a counted claim", lambda c: claim_held(c)[0] is not None),
    ("a claim marked but not counted", lambda c: claim_held(c)[0] is None and claims_mod.allocated_nodes(c)[0]),
    ("a claim marked on two nodes", lambda c: len(claims_mod.allocated_nodes(c)[0]) == 2),
    ("a claim of ours naming no node", lambda c: claims_mod.allocated_nodes(c)[1] == claims_mod.NO_NODE),
])
def test_the_shapes_above_reach_every_outcome(what, found):
    """Without these the property above could hold only because nothing is ever counted."""
    assert find(st.builds(any_claim, NEAR, SPEC), found, settings=settings(database=None, max_examples=5000)), what
