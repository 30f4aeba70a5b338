"""LiveState: which watch events cost a snapshot rebuild."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from scheduler import contract
from scheduler.core import Allocation
from scheduler.extender.live import ASSUME_TTL_S, LiveState

AT = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def _node(name: str = "n1") -> dict:
    return node_body(NodeSpec(name, 8, "NVIDIA-H100-80GB-HBM3", H100_MIB), now=AT)


def _heartbeat(n: dict) -> dict:
    n = copy.deepcopy(n)
    n["metadata"]["resourceVersion"] = "999"
    n.setdefault("status", {})["conditions"] = [{"type": "Ready", "status": "True",
                                                  "lastHeartbeatTime": "2026-11-23T10:00:40Z"}]
    return n


def _relabel(n: dict) -> dict:
    n = copy.deepcopy(n)
    n["metadata"]["labels"][contract.GPU_PRODUCT_LABEL] = "NVIDIA-A100-SXM4-80GB"
    return n


def _cordon(n: dict) -> dict:
    n = copy.deepcopy(n)
    n.setdefault("spec", {})["unschedulable"] = True
    return n


def _new_report(n: dict) -> dict:
    return node_body(NodeSpec(n["metadata"]["name"], 8, "NVIDIA-H100-80GB-HBM3", H100_MIB),
                     now=datetime(2026, 11, 23, 10, 1, tzinfo=timezone.utc))


@pytest.mark.parametrize("typ, change, dirty, patched", [
    ("MODIFIED", _heartbeat, False, False),  # kubelet/kwok heartbeats: nothing the snapshot reads
    ("MODIFIED", lambda n: n, False, False),  # a resync of the same object
    # a node the snapshot has: its row derived afresh at once, no rebuild
    ("MODIFIED", _relabel, False, True),  # GPU product label
    ("MODIFIED", _cordon, False, True),  # unschedulable: no GPUs for new pods
    ("MODIFIED", _new_report, False, True),  # the agent published a new report
    # the node list changes: the rows mean other nodes, the refresher rebuilds
    ("ADDED", lambda n: _node("n2"), True, False),
    ("DELETED", lambda n: n, True, False),
    ("DELETED", lambda n: _node("ghost"), False, False),  # never known
])
def test_only_events_that_change_what_the_snapshot_reads_change_it(typ, change, dirty, patched):
    live = LiveState(stale_after_s=600, clock=lambda: AT.timestamp() + 30)
    base = _node()
    live.set_nodes([base])
    before = live.snapshot()
    assert not live._dirty
    live.on_node(typ, change(base))
    assert live._dirty is dirty
    assert (live.snapshot() is not before) is patched
    if patched:  # what a rebuild would make of it
        patched_snap = live.snapshot()
        live.rebuild(now=patched_snap.now)
        assert_same_rows(patched_snap, live.snapshot())


def assert_same_rows(got, want) -> None:
    """Two snapshots of one node list say the same of every node (product codes read as names)."""
    from tests.scheduler.core.fixtures import assert_same_snapshot
    assert_same_snapshot(got, want)


def _committed(live: LiveState, node: str) -> dict[int, int]:
    from scheduler.extender.server import describe_node
    return {g["index"]: g["committedMiB"] for g in describe_node(live.snapshot(), node)["gpus"] if g["committedMiB"]}


def test_a_failed_bind_of_an_already_bound_pod_keeps_what_it_holds():
    """Found by the fault suite: a retried bind's reservation failed (409, already bound) and
    forget() dropped the pod's confirmed GPU too, until the next rebuild."""

    live = LiveState(stale_after_s=86400)
    live.set_nodes([_node("n1")])
    pod = {"metadata": {"name": "p", "namespace": "ns", "annotations": ours("n1", "0")},
           "spec": {"nodeName": "n1", "containers": [{"resources": {"limits": {contract.GPU_RESOURCE: "1"}}}]},
           "status": {"phase": "Running"}}
    live.set_pods([pod])
    assert _committed(live, "n1") == {0: H100_MIB} and live.placed_on("ns/p") == "n1"
    live.assume("n1", Allocation(pod_key="ns/p", gpu_ids=(1,), memory_per_gpu=0, whole=True, count=1))
    assert _committed(live, "n1") == {1: H100_MIB}  # one pod, one allocation per node: the reservation replaced it
    live.forget("n1", "ns/p")
    assert _committed(live, "n1") == {0: H100_MIB}  # GPU 0 is still held by p


def ours(node: str, ids: str) -> dict[str, str]:
    """gpu-ids with the placement our bind writes beside them (what makes them trusted)."""
    return {contract.GPU_IDS: ids, contract.PLACEMENT: json.dumps({"node": node, "gpus": [int(i) for i in ids.split(",")]})}


def _bound(node: str, ids: str, *, whole: int = 0, memory: str = "") -> dict:
    annotations = {**ours(node, ids), **({contract.GPU_MEMORY: memory} if memory else {})}
    limits = {contract.GPU_RESOURCE: str(whole)} if whole else {}
    return {"metadata": {"name": "p", "namespace": "ns", "annotations": annotations},
            "spec": {"nodeName": node, "containers": [{"resources": {"limits": limits}}]},
            "status": {"phase": "Pending"}}


GIB_MIB = 1024


@pytest.mark.parametrize("reserved, watched, kept, committed", [
    # (node, gpu ids, whole, memory bytes) reserved by our bind; the pod as the watch shows it
    (("n1", (2,), False, 20 * 2**30), _bound("n1", "2", memory="20Gi"), True, {2: 20 * GIB_MIB}),
    # whole GPUs: the memory figure differs (the GPU's total against the request's 0), the count does not
    (("n1", (0, 1), True, H100_MIB * 2**20), _bound("n1", "0,1", whole=2), True, {0: H100_MIB, 1: H100_MIB}),
    # anything else is recounted from what the watch shows
    (("n1", (2,), False, 20 * 2**30), _bound("n1", "3", memory="20Gi"), False, {3: 20 * GIB_MIB}),
    (("n1", (2,), False, 20 * 2**30), _bound("n1", "2", memory="30Gi"), False, {2: 30 * GIB_MIB}),
    (("n1", (2,), False, 20 * 2**30), _bound("n2", "2", memory="20Gi"), False, {}),
])
def test_the_watch_confirming_a_reservation_leaves_the_snapshot_alone_and_anything_else_recounts(
        reserved, watched, kept, committed):

    live = LiveState(stale_after_s=86400)
    live.set_nodes([_node("n1"), _node("n2")])
    node, ids, whole, memory = reserved
    live.assume(node, Allocation(pod_key="ns/p", gpu_ids=ids, memory_per_gpu=memory, whole=whole, count=len(ids)))
    before = live.snapshot()
    live.on_pod("ADDED", watched)
    assert (live.snapshot() is before) is kept
    assert _committed(live, "n1") == committed
    assert live.placed_on("ns/p") == watched["spec"]["nodeName"]


def test_the_node_rows_are_rebuilt_with_the_node_list_and_kept_while_it_stays():
    live = LiveState(clock=lambda: AT.timestamp())
    live.set_nodes([_node("n1"), _node("n2")])
    first = live.view()
    assert first.rows.names is first.snapshot.names and first.rows.find(b'"n2","n1"').tolist() == [1, 0]
    # a bind, a pod event and a rebuild for a changed report keep the node list: the same rows
    live.assume("n1", Allocation("ns/p", (0,), 0, True))
    live.on_pod("ADDED", _bound("n2", "3", whole=1))
    live.on_node("MODIFIED", _new_report(_node("n2")))
    live.rebuild()
    assert live.snapshot() is not first.snapshot and live.view().rows is first.rows
    # a node added: other rows, found by a new NodeRows
    live.on_node("ADDED", _node("n0"))
    live.rebuild()
    now = live.view()
    assert now.rows is not first.rows and now.rows.names is now.snapshot.names
    assert now.rows.find(b'"n0"').tolist() == [now.snapshot.index["n0"]]


# ---------- ResourceClaims (DRA): counted as the watch shows them, on the report's GPU of the UUID

def _dra_node(name: str = "n1") -> dict:
    from scheduler.nodeinfo import GPU, NodeReport, annotations_for
    n = _node(name)
    report = NodeReport(gpus=tuple(GPU(i, f"GPU-00000000-0000-0000-0000-{i:012x}", 80 * 2**30, 0) for i in range(8)),
                        reported_at=AT)
    n["metadata"]["annotations"].update(annotations_for(report))
    return n


def _claim(name: str, device_index: int, memory: str | None, node: str = "n1", pool: str | None = None) -> dict:
    r: dict = {"request": "gpu", "driver": contract.DRA_DRIVER, "pool": pool or node,
               "device": f"gpu-00000000-0000-0000-0000-{device_index:012x}"}
    if memory:
        r["consumedCapacity"] = {"memory": memory}
    return {"metadata": {"namespace": "t", "name": name},
            "status": {"allocation": {"devices": {"results": [r]}, "nodeSelector": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}}


def test_claim_events_count_release_and_survive_rebuilds(caplog):
    live = LiveState(stale_after_s=1e9, clock=lambda: AT.timestamp())
    live.set_claims([_claim("early", 5, "10Gi")])  # listed before its node: counted once the node is
    live.set_nodes([_dra_node()])
    committed = lambda: [int(x) >> 30 for x in live.snapshot().committed[0]]  # noqa: E731  GiB per GPU
    assert committed() == [0, 0, 0, 0, 0, 10, 0, 0]
    live.on_claim("ADDED", _claim("a", 3, "20Gi"))
    assert committed() == [0, 0, 0, 20, 0, 10, 0, 0]  # at once, without a rebuild
    live.on_claim("MODIFIED", _claim("a", 3, "30Gi"))
    assert committed() == [0, 0, 0, 30, 0, 10, 0, 0]  # replaced, not added: 30, not 50
    live.rebuild()
    assert committed() == [0, 0, 0, 30, 0, 10, 0, 0]
    live.on_claim("ADDED", _claim("w", 1, None))
    assert committed() == [0, 80, 0, 30, 0, 10, 0, 0] and bool(live.snapshot().exclusive[0, 1])
    live.on_claim("DELETED", _claim("a", 3, "30Gi"))
    assert committed() == [0, 80, 0, 0, 0, 10, 0, 0]
    # hostile: another node's pool, an unknown GPU: logged once, not counted, nothing raised
    with caplog.at_level("WARNING"):
        live.on_claim("ADDED", _claim("h1", 2, "20Gi", pool="n2"))
        live.on_claim("ADDED", _claim("h2", 99, "20Gi"))
        live.rebuild()
    assert committed() == [0, 80, 0, 0, 0, 10, 0, 0]
    assert set(live.claim_problems) == {"claim:t/h1", "claim:t/h2"}
    assert sum("not counted" in r.message for r in caplog.records) == 2
    live.on_claim("DELETED", _claim("h2", 99, "20Gi"))
    assert set(live.claim_problems) == {"claim:t/h1"}


def test_a_claim_follows_its_gpu_when_the_report_renumbers_the_gpus():
    """After a reboot the driver may enumerate GPUs in another order: the claim's device (a
    UUID) is GPU 3 in the first report, GPU 6 in the next; the report's event moves the 20 GiB."""
    from scheduler.nodeinfo import GPU, NodeReport, annotations_for
    live = LiveState(stale_after_s=1e9, clock=lambda: AT.timestamp())
    live.set_nodes([_dra_node()])
    live.set_claims([_claim("a", 3, "20Gi")])
    committed = lambda: [int(x) >> 30 for x in live.snapshot().committed[0]]  # noqa: E731
    assert committed() == [0, 0, 0, 20, 0, 0, 0, 0]
    live.rebuild()  # the same report: resolved from the cache, still counted
    assert committed() == [0, 0, 0, 20, 0, 0, 0, 0]
    n = _dra_node()
    swapped = {3: 6, 6: 3}
    report = NodeReport(gpus=tuple(GPU(swapped.get(i, i), f"GPU-00000000-0000-0000-0000-{i:012x}", 80 * 2**30, 0)
                                   for i in range(8)), reported_at=AT)
    n["metadata"]["annotations"].update(annotations_for(report))
    live.on_node("MODIFIED", n)
    assert committed() == [0, 0, 0, 0, 0, 0, 20, 0]  # the node's row derived afresh at once
    live.rebuild()
    assert committed() == [0, 0, 0, 0, 0, 0, 20, 0]


def test_a_reader_never_sees_an_update_half_applied():
    """Readers take the snapshot without the lock while watch events patch it. A pod moving
    between two nodes in one event, and a report whose GPU use and cached model change
    together, must each be seen whole or not at all: the pod counted on exactly one node,
    the model cached exactly in the reports dated at odd seconds."""
    import threading
    from datetime import timedelta

    import numpy as np

    specs = {
        False: NodeSpec("n1", 8, "NVIDIA-H100-80GB-HBM3", H100_MIB),
        True: NodeSpec("n1", 8, "NVIDIA-H100-80GB-HBM3", H100_MIB, cached_models={"org/m": (10 * 2**30, "disk")}),
    }
    live = LiveState(stale_after_s=86400, clock=lambda: AT.timestamp() + 3600)
    live.set_nodes([node_body(specs[False], now=AT), _node("n2")])
    live.set_pods([])
    pods = {n: _bound(n, "2", memory="20Gi") for n in ("n1", "n2")}
    stop, seen, torn = threading.Event(), [0], []

    def read() -> None:
        while not stop.is_set():
            s = live.snapshot()
            on = [r for r in range(len(s)) if any(a.pod_key == "ns/p" for a in s.allocations[r])]
            share = int(s.committed.sum()) // 2**30
            cached = "org/m" in s.model_cache and bool(s.node_models[s.index["n1"]])
            using = int(s.reported_at[s.index["n1"]]) % 2 == 1
            free_follows = np.array_equal(s.free[on], s.gpu_mem_total[on] - s.committed[on])
            if len(on) != 1 or share != 20 or cached != using or not free_follows:
                torn.append((on, share, cached, using, free_follows))
            seen[0] += 1

    live.on_pod("ADDED", pods["n2"])
    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 300):
            live.on_pod("MODIFIED", pods["n1" if i % 2 else "n2"])
            live.on_node("MODIFIED", node_body(specs[bool(i % 2)], now=AT + timedelta(seconds=i)))
    finally:
        stop.set()
        reader.join()
    assert seen[0] > 10 and not torn, torn[:3]


@pytest.mark.parametrize("later_s, stale", [
    (0, False),  # reported 30 s before: fresh
    (560, False),  # 590 s old against 600: still fresh
    (580, True),  # 610 s old: stale
])
def test_a_rejudge_says_what_a_rebuild_then_would_and_releases_expired_reservations(later_s, stale):
    clock = [AT.timestamp() + 30]
    live = LiveState(stale_after_s=600, clock=lambda: clock[0])
    live.set_nodes([_node("n1"), _node("n2")])
    live.set_pods([])
    live.assume("n1", Allocation(pod_key="ns/p", gpu_ids=(2,), memory_per_gpu=20 * 2**30, whole=False),
                now=clock[0] - ASSUME_TTL_S + 100)  # its binding has 100 s to show up
    clock[0] += later_s
    live.rejudge()
    judged = live.snapshot()
    assert bool(judged.stale[judged.index["n1"]]) is stale
    assert _committed(live, "n1") == ({} if later_s > 100 else {2: 20 * GIB_MIB})
    live.rebuild()
    assert_same_rows(judged, live.snapshot())


def _cpu_pod(name: str, node: str, cpu: str, *, phase: str = "Running", gpus: int = 0) -> dict:
    resources = {"requests": {"cpu": cpu}}
    if gpus:
        resources["limits"] = {contract.GPU_RESOURCE: str(gpus)}
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": resources}]},
            "status": {"phase": phase}}


@pytest.mark.parametrize("events,want_n1", [
    # n1 offers 128 cores (node_body); every bound pod's request counts, GPU or not
    ([("ADDED", _cpu_pod("a", "n1", "8"))], 128_000 - 8_000),
    ([("ADDED", _cpu_pod("a", "n1", "8")), ("ADDED", _cpu_pod("b", "n1", "500m", gpus=1))], 128_000 - 8_500),
    ([("ADDED", _cpu_pod("a", "n1", "8")), ("MODIFIED", _cpu_pod("a", "n1", "8", phase="Succeeded"))], 128_000),
    ([("ADDED", _cpu_pod("a", "n1", "8")), ("DELETED", _cpu_pod("a", "n1", "8"))], 128_000),
    ([("ADDED", _cpu_pod("a", "n1", "8")), ("ADDED", _cpu_pod("a", "n2", "8"))], 128_000),  # moved to n2
    ([("ADDED", _cpu_pod("a", "n1", "lots"))], 128_000),  # unreadable: counts 0
    ([("ADDED", _cpu_pod("a", "n1", "200"))], 0),  # more than the node has: none free, not negative
])
def test_pod_events_keep_every_nodes_cpu_requested_as_a_rebuild_would(events, want_n1):
    live = LiveState(clock=lambda: AT.timestamp())
    live.set_nodes([_node("n1"), _node("n2")])
    live.set_pods([])
    for typ, pod in events:
        live.on_pod(typ, copy.deepcopy(pod))
    snap = live.snapshot()
    assert int(snap.cpu_free[snap.index["n1"]]) == want_n1
    patched = (snap.cpu_requested.copy(), snap.cpu_free.copy())
    live.rebuild()
    assert live.snapshot().cpu_requested.tolist() == patched[0].tolist()
    assert live.snapshot().cpu_free.tolist() == patched[1].tolist()


def test_pod_events_keep_every_nodes_memory_requested_as_a_rebuild_would():
    """Memory is counted beside CPU by the same events: a pod's request on its node, gone
    when it finishes, moved with it."""
    live = LiveState(clock=lambda: AT.timestamp())
    live.set_nodes([_node("n1"), _node("n2")])
    live.set_pods([])
    total = int(live.snapshot().ram_allocatable[0])
    big = _cpu_pod("a", "n1", "8")
    big["spec"]["containers"][0]["resources"]["requests"]["memory"] = "100Gi"
    small = _cpu_pod("b", "n1", "1", gpus=1)
    small["spec"]["containers"][0]["resources"]["requests"]["memory"] = "512Mi"
    for typ, pod in (("ADDED", big), ("ADDED", small)):
        live.on_pod(typ, copy.deepcopy(pod))
    snap = live.snapshot()
    assert total > 0 and int(snap.ram_free[snap.index["n1"]]) == total - 100 * 2**30 - 512 * 2**20
    small["spec"]["containers"][0]["resources"]["requests"]["memory"] = "1Gi"  # resized: memory alone moves
    live.on_pod("MODIFIED", copy.deepcopy(small))
    assert int(live.snapshot().ram_free[0]) == total - 101 * 2**30
    live.on_pod("MODIFIED", {**copy.deepcopy(big), "status": {"phase": "Succeeded"}})
    patched = live.snapshot().ram_free.tolist()
    assert patched[live.snapshot().index["n1"]] == total - 2**30
    live.rebuild()
    assert live.snapshot().ram_free.tolist() == patched


def test_a_nodes_unreadable_cpu_is_logged_and_limits_nothing(caplog):
    n = _node("n1")
    n["status"]["allocatable"]["cpu"] = "-3"
    live = LiveState(clock=lambda: AT.timestamp())
    live.set_nodes([n])
    assert live.snapshot().cpu_allocatable.tolist() == [0]
    assert "must not be negative" in caplog.text and live.node_resource_errors["n1"]


def test_a_pods_unreadable_cpu_is_logged_once_per_pod_and_reason(caplog):
    live = LiveState(clock=lambda: AT.timestamp())
    live.set_nodes([_node("n1")])
    with caplog.at_level("WARNING"):
        live.set_pods([_cpu_pod("a", "n1", "-1"), _cpu_pod("good", "n1", "1")])
        for _ in range(3):  # status updates: the same reason, not logged again
            live.on_pod("MODIFIED", _cpu_pod("a", "n1", "-1"))
        live.set_pods([_cpu_pod("a", "n1", "-1")])  # a relist: logged already
        live.on_pod("MODIFIED", _cpu_pod("a", "n1", "1e12"))  # a new reason: logged
        live.on_pod("ADDED", _cpu_pod("b", "n1", "lots"))  # another pod: logged
    said = [r.getMessage() for r in caplog.records if "CPU and memory requests" in r.getMessage()]
    assert len(said) == 3, said
    assert "ns/a" in said[0] and "must not be negative" in said[0]
    assert "ns/a" in said[1] and "more than" in said[1]
    assert "ns/b" in said[2] and "not a CPU quantity" in said[2]
    live.on_pod("DELETED", _cpu_pod("b", "n1", "lots"))
    live.on_pod("MODIFIED", _cpu_pod("a", "n1", "2"))
    assert live.pod_resource_problems == {}  # gone or mended: nothing kept
    assert live.snapshot().cpu_requested.tolist() == [2_000]


def test_a_reservation_counts_its_cpu_until_the_watch_shows_the_pod_or_it_is_released():
    """kube-scheduler's cache assumes a bound pod's CPU at once; so does ours, from the
    bind's reservation, until the watch shows the pod (then the watch's figure) or the
    bind fails (forget) or the reservation expires."""
    t = [AT.timestamp()]
    live = LiveState(clock=lambda: t[0])
    live.set_nodes([_node("n1")])
    live.set_pods([])
    free = lambda: int(live.snapshot().cpu_free[0])  # noqa: E731
    alloc = Allocation("ns/p", (0,), 0, whole=True, cpu_milli=8_000)
    live.assume("n1", alloc)
    assert free() == 128_000 - 8_000
    live.on_pod("ADDED", _cpu_pod("p", "n1", "8", gpus=1))  # the watch confirms: counted once
    assert free() == 128_000 - 8_000
    live.on_pod("DELETED", _cpu_pod("p", "n1", "8", gpus=1))
    assert free() == 128_000
    live.assume("n1", Allocation("ns/q", (1,), 0, whole=True, cpu_milli=4_000))
    live.forget("n1", "ns/q")  # the Binding failed
    assert free() == 128_000
    live.assume("n1", Allocation("ns/r", (2,), 0, whole=True, cpu_milli=4_000))
    live.rebuild()  # a rebuild counts the reservation too
    assert free() == 124_000
    t[0] += ASSUME_TTL_S + 1  # the Binding never showed up in the watch
    live.rejudge()
    assert free() == 128_000


def test_a_reservation_counts_its_memory_as_its_cpu():
    live = LiveState(clock=lambda: AT.timestamp())
    live.set_nodes([_node("n1")])
    live.set_pods([])
    total = int(live.snapshot().ram_free[0])
    live.assume("n1", Allocation("ns/p", (0,), 0, whole=True, cpu_milli=8_000, ram=64 * 2**30))
    assert int(live.snapshot().ram_free[0]) == total - 64 * 2**30
    live.forget("n1", "ns/p")
    assert int(live.snapshot().ram_free[0]) == total


def test_learned_shapes_count_pending_whole_gpu_pods_once():
    """What is asked and has not found room is part of the workload (workload_shapes); a
    pending pod our bind reserved, or the watch shows bound, is counted once, as placed."""
    from scheduler.core import PodRequest
    from scheduler.extender.live import SHAPES_EVERY_S

    t = [AT.timestamp()]
    live = LiveState(clock=lambda: t[0])
    live.set_nodes([_node("n1"), _node("n2")])
    live.set_pods([_cpu_pod(f"p{i}", "n1", "1", gpus=1) for i in range(4)])
    live.assume("n2", Allocation("ns/r", (1,), 0, whole=True))
    eight = PodRequest(whole_gpus=8, cpu_milli=64_000)
    # the pending pods' informer lags: p0 and r are bound or reserved, still listed
    pending = [("ns/p0", eight), ("ns/r", eight)] + [(f"ns/q{i}", eight) for i in range(16)]
    live.pending_requests = lambda: pending
    live.rebuild()
    # placed: p0..p3 and r, 1 GPU each; pending: q0..q15 -> 5/21 and 16/21
    assert [s.whole for s in live.shapes] == [1, 8]
    assert [s.weight for s in live.shapes] == pytest.approx([5 / 21, 16 / 21])
    pending += [(f"ns/q{i}", eight) for i in range(16, 20)]
    t[0] += SHAPES_EVERY_S + 1  # a rejudge learns again too: 5/25, 20/25
    live.rejudge()
    assert [s.weight for s in live.shapes] == pytest.approx([5 / 25, 20 / 25])
