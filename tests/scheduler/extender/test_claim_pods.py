"""Claim pods (pods of the gpusched profile asking gpu.gpusched.io by ResourceClaim) through
the extender's verbs, beside annotation shares on one node of two 80 GiB GPUs: filter refuses
the node while the allocator could pick a GPU holding shares, bind refuses an allocation
that over-commits a GPU in gpusched's records and counts one that does not, with no gpu-ids
annotation. The API server's part is played by dicts (the real one: test_claim_share_race.py)."""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import contract
from scheduler.core import Allocation
from scheduler.core.beside_claims import WHOLE_BESIDE_CLAIMS
from scheduler.core.claims import NO_NODE, claim_key
from scheduler.extender.claim_pods import ClaimPods
from scheduler.extender.live import LiveState
from scheduler.extender.server import Extender, describe_node
from scheduler.nodeinfo import GPU, NodeReport, annotations_for

GiB = 2**30
CAP = 80 * GiB
NOW = datetime(2026, 12, 6, 6, 0, tzinfo=timezone.utc)


def uuid(i: int) -> str:
    return f"GPU-00000001-0000-0000-0000-{i:012x}"


def node(name: str) -> dict:
    report = NodeReport(gpus=tuple(GPU(i, uuid(i), CAP, 0) for i in range(2)), reported_at=NOW)
    res = {contract.GPU_RESOURCE: "2"}
    return {"metadata": {"name": name, "annotations": annotations_for(report)},
            "status": {"allocatable": res, "capacity": res}}


def rslice(name: str) -> dict:
    return {"metadata": {"name": f"{name}-{contract.DRA_DRIVER}"},
            "spec": {"driver": contract.DRA_DRIVER, "nodeName": name, "pool": {"name": name},
                     "devices": [{"name": uuid(i).lower(), "allowMultipleAllocations": True,
                                  "capacity": {"memory": {"value": str(CAP)}}} for i in range(2)]}}


def claim(name: str, memory: str = "20Gi", gpu: int | None = None, node_name: str = "n1", rv: int = 1,
          reserved: tuple[str, ...] = ("uid-p",)) -> dict:
    c: dict = {"metadata": {"namespace": "ns", "name": name, "resourceVersion": str(rv)},
               "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
                   "deviceClassName": contract.DRA_DRIVER, "capacity": {"requests": {"memory": memory}}}}]}}}
    if gpu is not None:
        c["status"] = {"reservedFor": [{"resource": "pods", "name": "p", "uid": u} for u in reserved],
                       "allocation": {"devices": {"results": [{
                           "request": "gpu", "driver": contract.DRA_DRIVER, "pool": node_name,
                           "device": uuid(gpu).lower(), "consumedCapacity": {"memory": memory}}]},
                           "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                               {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}}
    return c


def pod(name: str = "p", claim_name: str = "c") -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"schedulerName": contract.SCHEDULER_NAME, "containers": [{"name": "s"}],
                     "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}]},
            "status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": claim_name}]}}


class Api:
    def __init__(self) -> None:
        self.claims: dict[str, dict] = {}
        self.binds: list[tuple[str, str, dict]] = []

    def get_claim(self, namespace: str, name: str) -> dict | None:
        return self.claims.get(name)

    def get_pod(self, namespace: str, name: str) -> dict:
        return pod(name)

    def binder(self, namespace, name, uid, node, annotations, resource_version) -> None:
        self.binds.append((name, node, annotations))


def setup(*claims: dict) -> tuple[Extender, LiveState, ClaimPods, Api]:
    live = LiveState(stale_after_s=10**9)
    live.set_nodes([node("n1"), node("n2")])
    api = Api()
    cps = ClaimPods(live, api.get_claim)
    cps.set_slices([rslice("n1"), rslice("n2")])
    cps.set_claims(list(claims))
    ext = Extender(live=live, binder=api.binder, get_pod=api.get_pod, claim_pods=cps)
    return ext, live, cps, api


def share(live: LiveState, gpu: int, gib: int, node_name: str = "n1") -> None:
    live.assume(node_name, Allocation(f"ns/share-{gpu}", (gpu,), gib * GiB, False))


def filtered(ext: Extender, p: dict) -> dict:
    return json.loads(ext.filter(json.dumps({"Pod": p, "NodeNames": ["n1", "n2"]}).encode()))


def bind(ext: Extender, node_name: str = "n1") -> str:
    return json.loads(ext.bind(json.dumps({"PodName": "p", "PodNamespace": "ns", "PodUID": "uid-p",
                                           "Node": node_name}).encode()))["Error"]


def committed_mib(live: LiveState, node_name: str = "n1") -> list[int]:
    return [g["committedMiB"] for g in describe_node(live.snapshot(), node_name)["gpus"]]


def test_filter_refuses_a_node_where_the_allocator_could_pick_a_gpu_of_shares():
    ext, live, _, _ = setup(claim("c"))
    share(live, 1, 70)  # GPU 1: 80 to the allocator, 10 free to gpusched; 20Gi could land there
    out = filtered(ext, pod())
    assert out["NodeNames"] == ["n2"]
    assert out["FailedNodes"]["n1"] == (
        f"gpusched: kube-scheduler's allocator could give 20Gi device {uuid(1).lower()} (GPU 1) (80Gi free to it), "
        "but only 10Gi is free after gpusched's annotation shares")
    assert "ns/p" in ext._inflight  # a share's filter waits for this pod's bind


def test_a_gpu_the_allocator_sees_full_is_no_candidate():
    # another claim holds 70Gi of GPU 1: to the allocator 10Gi free, so a 20Gi claim can only get GPU 0
    ext, live, _, _ = setup(claim("c"), claim("other", "70Gi", gpu=1, reserved=("uid-x",)))
    share(live, 0, 50)  # GPU 0: 30 free to gpusched, 80 to the allocator: 20 fits either way
    assert filtered(ext, pod())["NodeNames"] == ["n1", "n2"]
    share(live, 0, 70)  # now 10 free on GPU 0, the only candidate
    assert "GPU 0" in filtered(ext, pod())["FailedNodes"]["n1"]


def test_bind_counts_the_claim_and_writes_no_gpu_ids():
    ext, live, cps, api = setup(claim("c"))
    share(live, 1, 70)
    api.claims["c"] = claim("c", gpu=0, rv=5)  # PreBind's write, not yet in the watch
    assert bind(ext) == ""
    assert api.binds == [("p", "n1", {})]
    assert committed_mib(live) == [20 * 1024, 70 * 1024]
    # the watch delivers the claim's older, unallocated version late: still counted
    cps.on_claim("MODIFIED", claim("c", rv=4))
    assert committed_mib(live) == [20 * 1024, 70 * 1024]
    cps.on_claim("MODIFIED", claim("c", gpu=0, rv=5))
    cps.on_claim("DELETED", claim("c", gpu=0, rv=6))
    assert committed_mib(live) == [0, 70 * 1024]


def test_bind_reads_the_pod_again_when_the_informers_copy_lacks_its_claims():
    ext, live, _, api = setup(claim("c"))
    early = pod()
    early["status"] = {}  # the watch has the pod from before the claim controller named its claim
    ext.pending = lambda key: early
    api.claims["c"] = claim("c", gpu=0, rv=5)
    assert bind(ext) == ""  # a GET's copy names the claim: counted and bound
    assert api.binds == [("p", "n1", {})] and committed_mib(live) == [20 * 1024, 0]


def test_bind_refuses_a_claim_the_watch_deallocated_or_deleted_after_the_read():
    # bind's GET read rv 5 (allocated); the watch has since applied rv 6 (deallocated), or a delete:
    # writing rv 5 back would count 20Gi that nobody holds until the next relist
    for late in (("MODIFIED", claim("c", rv=6)), ("DELETED", claim("c", gpu=0, rv=6))):
        ext, live, cps, api = setup(claim("c", rv=3))
        api.claims["c"] = claim("c", gpu=0, rv=5)
        real_get = api.get_claim

        def get_then_watch(namespace, name, late=late, cps=cps, real_get=real_get):
            got = real_get(namespace, name)
            cps.on_claim(*late)  # the watch thread runs between the GET and the count
            return got
        cps.get_claim = get_then_watch
        assert "while gpusched was binding the pod" in bind(ext)
        assert api.binds == [] and committed_mib(live) == [0, 0]


def test_a_node_publishing_too_many_devices_is_cut_to_a_gpu_nodes_most():
    ext, live, cps, _ = setup(claim("c"))
    many = [dict(rslice("n1"), metadata={"name": f"n1-{i}"}) for i in range(100)]  # 100 slices x 2 devices
    cps.set_slices(many + [rslice("n2")])
    assert len(cps._devices["n1"]) == 64
    assert filtered(ext, pod())["NodeNames"] == ["n1", "n2"]


def test_bind_refuses_what_the_records_cannot_hold():
    ext, live, _, api = setup(claim("c"))
    share(live, 1, 70)
    api.claims["c"] = claim("c", gpu=1)  # 70 + 20 > 80
    assert bind(ext) == ("gpusched: kube-scheduler's allocator gave ResourceClaim ns/c what gpusched's records hold "
                         "on n1: GPU 1 holds 70Gi of 80Gi for others, the claim consumes 20Gi; kube-scheduler "
                         "retries the pod")
    api.claims["c"] = claim("c")
    assert bind(ext) == "gpusched: ResourceClaim ns/c is not allocated a gpu.gpusched.io device"
    api.claims["c"] = claim("c", gpu=0, node_name="n2")
    assert bind(ext) == "gpusched: ResourceClaim ns/c is allocated on n2, not n1"
    api.claims["c"] = claim("c", gpu=0, reserved=("uid-x",))
    assert bind(ext) == "gpusched: ResourceClaim ns/c is not reserved for this pod"
    del api.claims["c"]
    assert bind(ext) == "gpusched: ResourceClaim ns/c does not exist"
    assert api.binds == [] and committed_mib(live) == [0, 70 * 1024]


def test_an_allocated_claim_over_shares_fails_filter_so_kube_scheduler_deallocates_it():
    """After a refused bind the claim stays allocated (Unreserve only clears reservedFor); the
    filter then refuses its node, and kube-scheduler's PostFilter deallocates it."""
    ext, live, _, _ = setup(claim("c", gpu=1, reserved=()))
    share(live, 1, 70)
    out = filtered(ext, pod())
    assert out.get("NodeNames") in (None, [])
    assert out["FailedNodes"] == {"n1": "gpusched: ns/c on n1: GPU 1 holds 70Gi of 80Gi for others, the claim "
                                        "consumes 20Gi", "n2": "gpusched: ns/c is allocated on n1"}


def test_unknown_claims_and_mixed_asks_are_refused_with_reasons():
    ext, _, cps, _ = setup()
    assert filtered(ext, pod())["FailedNodes"]["n1"] == "gpusched: ResourceClaim ns/c not seen yet; retrying"
    cps.on_claim("ADDED", claim("c"))
    p = pod()
    p["metadata"]["annotations"] = {contract.GPU_MEMORY: "10Gi"}
    assert "both by ResourceClaim" in filtered(ext, p)["FailedNodes"]["n1"]
    other = claim("c")
    other["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = "gpu.nvidia.com"
    cps.on_claim("MODIFIED", other)
    assert cps.pod(pod()) is None  # another driver's claim: not ours to place


def test_a_share_filter_waits_for_a_claim_pod_in_flight_and_sees_its_claim():
    """GPU 1 holds a 60Gi share. A 20Gi claim pod passes filter (any GPU the allocator picks has
    20Gi free to gpusched); the allocator gives it GPU 0. A 70Gi share's filter made meanwhile
    waits for the claim pod's bind, then sees GPU 0 with 60Gi free, GPU 1 with 20Gi: no room."""
    ext, live, _, api = setup(claim("c"))
    share(live, 1, 60)
    assert "n1" in filtered(ext, pod())["NodeNames"]
    big = {"metadata": {"name": "big", "namespace": "ns", "uid": "uid-big",
                        "annotations": {contract.GPU_MEMORY: "70Gi"}},
           "spec": {"schedulerName": contract.SCHEDULER_NAME, "containers": [{"name": "s"}]}}
    answer: dict = {}
    waiter = threading.Thread(target=lambda: answer.update(filtered(ext, big), at=time.monotonic()))
    waiter.start()
    time.sleep(0.2)
    assert not answer  # still waiting for the claim pod's bind
    api.claims["c"] = claim("c", gpu=0)  # kube-scheduler's PreBind
    bound_at = time.monotonic()
    assert bind(ext) == ""
    waiter.join(5)
    assert answer["at"] >= bound_at
    assert answer["NodeNames"] == ["n2"] and "n1" in answer["FailedNodes"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
NAMES = st.sampled_from(["c", "d", "gpu", ""]) | JSON
ENTRY = st.fixed_dictionaries({"name": NAMES}, optional={"resourceClaimName": NAMES,
                                                         "resourceClaimTemplateName": NAMES})
STATUS = st.fixed_dictionaries({"name": NAMES}, optional={"resourceClaimName": NAMES})
REQUEST = st.fixed_dictionaries({"name": NAMES}, optional={"exactly": st.fixed_dictionaries(
    {"deviceClassName": st.sampled_from([contract.DRA_DRIVER, "other"]) | JSON},
    optional={"count": JSON | st.integers(-2, 100), "allocationMode": st.sampled_from(["All", "ExactCount"]) | JSON,
              "capacity": st.fixed_dictionaries({"requests": st.fixed_dictionaries(
                  {"memory": st.sampled_from(["20Gi", "0", "-1Gi", "2Ti", "1e400"]) | JSON})}) | JSON,
              "adminAccess": JSON}), "firstAvailable": JSON})


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(ENTRY, max_size=3) | JSON, statuses=st.lists(STATUS, max_size=3) | JSON,
       requests=st.lists(REQUEST, max_size=3) | JSON, allocated=st.booleans())
def test_hostile_claims_and_pods_get_an_answer_never_a_crash(entries, statuses, requests, allocated):
    c = claim("c", gpu=0 if allocated else None)
    c["spec"]["devices"]["requests"] = requests
    ext, _, cps, api = setup(c)
    api.claims["c"] = c
    p = pod()
    p["spec"]["resourceClaims"], p["status"]["resourceClaimStatuses"] = entries, statuses
    out = filtered(ext, p)
    assert set(out.get("NodeNames") or []) | set(out.get("FailedNodes") or {}) == {"n1", "n2"}
    cps.bind(p, "n1")  # a reason or None, never an exception


# ---- nvidia.com/gpu pods and claims on different nodes (scheduler/core/beside_claims.py)

def whole_pod(name: str = "w") -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
            "spec": {"schedulerName": contract.SCHEDULER_NAME,
                     "containers": [{"name": "s", "resources": {"limits": {contract.GPU_RESOURCE: "1"}}}]}}


def whole(live: LiveState, gpu: int, node_name: str = "n1") -> None:
    live.assume(node_name, Allocation(f"ns/whole-{gpu}", (gpu,), CAP, True))


def test_an_nvidia_gpu_pod_does_not_pass_a_node_where_a_claim_holds_a_gpu():
    # n1: a claim holds 20Gi of GPU 0, GPU 1 is free; the device plugin, not seeing the
    # claim, could still hand GPU 0 to a whole-GPU pod
    ext, live, _, _ = setup(claim("other", gpu=0, reserved=("uid-x",)))
    assert live.claim_nodes == frozenset({"n1"})
    out = filtered(ext, whole_pod())
    assert out["NodeNames"] == ["n2"]
    assert out["FailedAndUnresolvableNodes"] == {"n1": WHOLE_BESIDE_CLAIMS} and out["FailedNodes"] == {}


def test_an_nvidia_gpu_pod_bind_is_refused_where_a_claim_was_counted_since_its_filter():
    ext, live, cps, api = setup()
    assert filtered(ext, whole_pod())["NodeNames"] == ["n1", "n2"]
    cps.on_claim("ADDED", claim("late", gpu=0, reserved=("uid-x",)))  # allocated meanwhile
    api.get_pod = lambda namespace, name: whole_pod(name)
    ext.get_pod = api.get_pod
    err = json.loads(ext.bind(json.dumps({"PodName": "w", "PodNamespace": "ns", "PodUID": "uid-w",
                                          "Node": "n1"}).encode()))["Error"]
    assert err.startswith(WHOLE_BESIDE_CLAIMS) and "claimed since the filter" in err
    assert api.binds == []
    cps.on_claim("DELETED", claim("late", gpu=0, reserved=("uid-x",)))
    assert live.claim_nodes == frozenset()
    # a relist publishes the set once, whole
    live.set_claims([claim("a", gpu=0, reserved=("uid-x",)), claim("b", gpu=1, node_name="n2", reserved=("uid-y",))])
    assert live.claim_nodes == frozenset({"n1", "n2"})
    live.set_claims([])
    assert live.claim_nodes == frozenset()


def test_a_claim_pod_is_refused_beside_an_nvidia_gpu_pod():
    """Filter: the allocator could pick GPU 0, which gpusched's records give the whole-GPU
    pod. Bind: a whole-GPU pod reserved there after the filter refuses the claim's bind; its
    allocated claim then fails filter on that node, so kube-scheduler deallocates it."""
    ext, live, _, api = setup(claim("c"))
    whole(live, 0)
    assert filtered(ext, pod())["NodeNames"] == ["n2"]
    live.forget("n1", "ns/whole-0")
    assert filtered(ext, pod())["NodeNames"] == ["n1", "n2"]
    whole(live, 0)  # bound meanwhile
    api.claims["c"] = claim("c", gpu=1, rv=5)
    assert bind(ext) == ("gpusched: n1 runs pods holding nvidia.com/gpu (ns/whole-0) whose GPUs the device plugin "
                         "picked without seeing claims; a claim there could share one of them; kube-scheduler "
                         "retries the pod")
    assert api.binds == []
    ext2, live2, _, _ = setup(claim("c", gpu=1, reserved=()))
    whole(live2, 0)
    assert filtered(ext2, pod())["FailedNodes"]["n1"].startswith("gpusched: ns/c on n1: n1 runs pods holding")


# ---- (a) claims gpusched cannot count still keep nvidia.com/gpu pods off their node;
# (b) that refusal is unresolvable (kube-scheduler's preemption cannot free a claimed node)

def raw_claim(allocation: object, spec: object = None, name: str = "r") -> dict:
    c: dict = {"metadata": {"namespace": "ns", "name": name, "resourceVersion": "1"},
               "status": {"allocation": allocation, "reservedFor": [{"resource": "pods", "name": "x", "uid": "uid-x"}]}}
    if spec is not None:
        c["spec"] = spec
    return c


OURS = {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": contract.DRA_DRIVER}}]}}
ON_N1 = {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}


def res(pool: object = "n1", device: object = None, **extra: object) -> dict:
    r = {"request": "gpu", "driver": contract.DRA_DRIVER, "pool": pool, "device": device or uuid(0).lower(), **extra}
    return {k: v for k, v in r.items() if v is not None}


U = "unresolvable"
# (id, claim, n1's answer to a whole-GPU pod: "unresolvable" (W) or "passes", whether it is said as uncounted)
UNCOUNTED_ROWS = [
    ("counted claim on n1", claim("c", gpu=0, reserved=("uid-x",)), U, False),
    ("result without a pool, selector n1", raw_claim({"devices": {"results": [res(pool=None)]}, "nodeSelector": ON_N1}),
     U, True),
    ("empty pool and device name, selector n1",
     raw_claim({"devices": {"results": [res(pool="", device="")]}, "nodeSelector": ON_N1}), U, True),
    ("unreadable consumedCapacity, no selector: the pool n1",
     raw_claim({"devices": {"results": [res(consumedCapacity={"memory": "lots"})]}}), U, True),
    ("devices not a list, spec of our class, selector n1", raw_claim({"devices": [], "nodeSelector": ON_N1}, OURS),
     U, True),
    ("device not in n1's report", raw_claim({"devices": {"results": [res(device="gpu-bogus")]}, "nodeSelector": ON_N1}),
     U, True),
    ("a result without a driver name, spec of our class: its pool n1, said",
     raw_claim({"devices": {"results": [res(driver=None)]}}, OURS), U, True),
    ("nothing names a node: not kept off, said", raw_claim({"devices": {"results": [res(pool=None)]}}), "passes", True),
    ("another driver's claim", raw_claim({"devices": {"results": [res(driver="gpu.nvidia.com")]}, "nodeSelector": ON_N1}),
     "passes", False),
]


@pytest.mark.parametrize("c,n1,said", [r[1:] for r in UNCOUNTED_ROWS], ids=[r[0] for r in UNCOUNTED_ROWS])
def test_a_claim_marks_its_node_even_where_gpusched_cannot_count_it(c, n1, said):
    ext, live, cps, api = setup(c)
    out = filtered(ext, whole_pod())
    if n1 == U:
        assert out["NodeNames"] == ["n2"]
        assert out["FailedAndUnresolvableNodes"] == {"n1": WHOLE_BESIDE_CLAIMS} and out["FailedNodes"] == {}
    else:
        assert out["NodeNames"] == ["n1", "n2"]
    assert (claim_key(c) in live.claim_problems) == said  # gpusched_extender_claims_not_counted
    # the same claim arriving by the watch after the filter: the bind is refused there too
    ext, live, cps, api = setup()
    assert filtered(ext, whole_pod())["NodeNames"] == ["n1", "n2"]
    cps.on_claim("ADDED", c)
    ext.get_pod = lambda namespace, name: whole_pod(name)
    err = json.loads(ext.bind(json.dumps({"PodName": "w", "PodNamespace": "ns", "PodUID": "uid-w",
                                          "Node": "n1"}).encode()))["Error"]
    assert err.startswith(WHOLE_BESIDE_CLAIMS) if n1 == U else err == ""
    cps.on_claim("DELETED", c)
    assert live.claim_nodes == frozenset()


def test_a_claim_naming_no_node_is_said_once_and_counted(caplog):
    nowhere = raw_claim({"devices": {"results": [res(pool=None)]}})
    ext, live, cps, _ = setup()
    with caplog.at_level(logging.WARNING, logger="scheduler.extender.live"):
        for rv in range(3):  # status updates of the same claim
            cps.on_claim("MODIFIED", dict(nowhere, metadata=dict(nowhere["metadata"], resourceVersion=str(rv + 2))))
        cps.set_claims([nowhere])  # a relist (new leader term, watch error)
    said = [r.getMessage() for r in caplog.records if "names no node" in r.getMessage()]
    assert said == ["ResourceClaim ns/r: not counted: device None/gpu-00000001-0000-0000-0000-000000000000: no pool "
                    "or device name; " + NO_NODE]
    assert list(live.claim_problems) == ["claim:ns/r"] and live.claim_nodes == frozenset()
    cps.on_claim("MODIFIED", raw_claim({"devices": {"results": [res()]}, "nodeSelector": ON_N1}))  # mended
    assert live.claim_problems == {} and live.claim_nodes == frozenset({"n1"})


def test_a_node_refused_for_other_reasons_stays_resolvable():
    # n2 has no free GPU (two whole pods reserved there): resolvable, as any filter reason;
    # n1 holds a claim: unresolvable
    ext, live, _, _ = setup(claim("c", gpu=0, reserved=("uid-x",)))
    whole(live, 0, "n2")
    whole(live, 1, "n2")
    out = filtered(ext, whole_pod())
    assert out["FailedAndUnresolvableNodes"] == {"n1": WHOLE_BESIDE_CLAIMS}
    assert list(out["FailedNodes"]) == ["n2"] and out.get("NodeNames") in (None, [])


# ---- (c) a shared claim whose pods run already is refused for a new pod beside an
# nvidia.com/gpu pod, whoever placed it: gpusched cannot tell which GPU the device plugin
# gave that pod (maybe the claim's), so a new consumer of the claim's GPU is not added

def other_scheduler_pod(node_name: str, gpus: int = 1, share: str = "", phase: str = "Running") -> dict:
    limits = {contract.GPU_RESOURCE: str(gpus)} if gpus else {}
    return {"metadata": {"name": "other", "namespace": "ns", "uid": "uid-other",
                         "annotations": {contract.GPU_MEMORY: share} if share else {}},
            "spec": {"schedulerName": "default-scheduler", "nodeName": node_name,
                     "containers": [{"name": "s", "resources": {"limits": limits}}]},
            "status": {"phase": phase}}


PLUGIN = ("gpusched: n1 runs pods holding nvidia.com/gpu (ns/other) whose GPUs the device plugin picked without "
          "seeing claims; a claim there could share one of them; kube-scheduler retries the pod")
# (id, another scheduler's pod, n1's filter reason for the new pod ("" passes), its bind's answer)
SHARED_ROWS = [
    ("nothing else on n1", None, "", ""),
    ("nvidia.com/gpu pod on n1", other_scheduler_pod("n1"), "gpusched: ns/c on n1: " + PLUGIN[10:], PLUGIN),
    ("nvidia.com/gpu pod on n2 only", other_scheduler_pod("n2"), "", ""),
    ("a 10Gi annotation share on n1: in gpusched's records, no device plugin", other_scheduler_pod(
        "n1", gpus=0, share="10Gi"), "", ""),
    ("the nvidia.com/gpu pod on n1 has finished", other_scheduler_pod("n1", phase="Succeeded"), "", ""),
]


@pytest.mark.parametrize("other,n1_reason,bind_answer", [r[1:] for r in SHARED_ROWS], ids=[r[0] for r in SHARED_ROWS])
def test_a_shared_claim_takes_no_new_pod_beside_an_nvidia_gpu_pod(other, n1_reason, bind_answer):
    shared = claim("c", gpu=0, reserved=("uid-x", "uid-p"))  # uid-x runs on n1 already; p joins it
    ext, live, _, api = setup(shared)
    if other is not None:
        live.on_pod("ADDED", other)
    out = filtered(ext, pod())
    assert out["FailedNodes"]["n2"] == "gpusched: ns/c is allocated on n1"
    assert out["FailedNodes"].get("n1", "") == n1_reason
    api.claims["c"] = shared
    assert bind(ext) == bind_answer
    assert api.binds == ([] if bind_answer else [("p", "n1", {})])
    if other is None:
        assert committed_mib(live) == [20 * 1024, 0]  # the claim counted once, however many pods share it


def test_device_count_is_what_the_slice_watch_has_shown():
    """/debug/nodes' draDevices: 2 devices per slice above; a node with no slice yet has 0,
    and no claim pod passes it until its devices are read."""
    _, _, cps, _ = setup()
    assert (cps.device_count("n1"), cps.device_count("n3")) == (2, 0)
    cps.set_slices([rslice("n2")])
    assert (cps.device_count("n1"), cps.device_count("n2")) == (0, 2)
