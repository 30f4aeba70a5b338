from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from scheduler.core import Allocation, NodeState, SnapshotError, build_snapshot
from scheduler.core import snapshot as snap
from scheduler.core.snapshot import CPU_UNKNOWN, RAM_UNKNOWN
from scheduler.nodeinfo import NodeReport
from tests.scheduler.core.fixtures import NOW, GiB, assert_same_snapshot, node, share, snapshot, whole

MiB = 2**20


@pytest.mark.parametrize("n,stale_after,want", [
    (node("n", reported_ago=10), 60, snap.OK),
    (node("n", reported_ago=60), 60, snap.OK),  # exactly at the limit: still trusted
    (node("n", reported_ago=61), 60, snap.STALE),
    (node("n", reported_ago=-30), 60, snap.OK),  # small clock skew is tolerated
    (node("n", reported_ago=-31), 60, snap.CLOCK_SKEW),  # past 30 s ahead: clock skew, its own reason
    (node("n", reported_ago=-900), 600, snap.CLOCK_SKEW),  # was "stale"; now it says why
    (replace(node("n"), report=replace(node("n").report, reported_at=None)), 60, snap.STALE),  # never said when
    # no report at all: the labels are trusted, there is nothing to go stale
    (NodeState("n", 8, "A100", 40960), 60, snap.OK),
    (NodeState("n", 8, "A100", 40960, NodeReport()), 60, snap.OK),  # an empty report is no report
    (node("n", 0), 60, snap.NO_GPUS),
    (NodeState("n", 0), 60, snap.NO_GPUS),
    (NodeState("n", 8, "A100", 40960, NodeReport(errors=("gpusched.io/reported-at: 'x' is not",))), 60,
     snap.BAD_REPORT),
])
def test_node_status(n, stale_after, want):
    s = snapshot(n, stale_after_s=stale_after)
    assert s.status[0] == want
    if want != snap.BAD_REPORT:  # an unreadable report is usually also undated; its status says why
        assert s.stale[0] == (want == snap.STALE)
    # an untrusted node offers nothing to new pods
    assert s.usable[0].any() == (want == snap.OK)


def test_staleness_moves_with_the_clock():
    s = snapshot(node("n", reported_ago=10), stale_after_s=60)
    assert s.status[0] == snap.OK
    later = s.at(NOW + 51)  # 61 s after the report
    assert later.status[0] == snap.STALE and later.max_free[0] == 0
    assert s.status[0] == snap.OK  # the original is untouched


def test_label_only_node():
    # 2 GPUs from the device plugin, 40960 MiB = 40 GiB each from GPU feature discovery
    s = snapshot(NodeState("n", 2, "NVIDIA-A100-SXM4-40GB", 40960))
    assert s.gpu_mem_total[0].tolist() == [40 * GiB, 40 * GiB]
    assert s.healthy[0].all() and s.whole_free_count[0] == 2
    assert s.products[s.product_code[0]] == "NVIDIA-A100-SXM4-40GB"


@pytest.mark.parametrize("allocs,used,free_gib,committed_gib,whole_free", [
    # 2 x 80 GiB, nothing on them
    ([], {}, [80, 80], [0, 0], [True, True]),
    # 30 + 10 GiB shares on GPU 0: committed 40, free 80 - 40 = 40
    ([share("a", 0, 30), share("b", 0, 10)], {}, [40, 80], [40, 0], [False, True]),
    # a whole GPU commits its total whatever the pod asked
    ([whole("a", 1)], {}, [80, 0], [0, 80], [True, False]),
    # the agent sees 50 GiB used where 30 were committed: free 80 - max(30, 50) = 30
    ([share("a", 0, 30)], {0: 50}, [30, 80], [30, 0], [False, True]),
    # committed 30 but not loaded yet (used 10): free 80 - max(30, 10) = 50
    ([share("a", 0, 30)], {0: 10}, [50, 80], [30, 0], [False, True]),
    # a process nobody told us about holds 20 GiB on GPU 1: no longer whole-free
    ([], {1: 20}, [80, 60], [0, 0], [True, False]),
])
def test_accounting(allocs, used, free_gib, committed_gib, whole_free):
    s = snapshot(node("n", 2, used=used, allocs=allocs))
    assert (s.free[0] // GiB).tolist() == free_gib
    assert (s.committed[0] // GiB).tolist() == committed_gib
    assert s.whole_free[0].tolist() == whole_free


def test_idle_noise_is_not_use():
    # nvidia-smi's few hundred MiB on an idle GPU: still whole-free, all memory free
    n = node("n", 1)
    n.report = replace(n.report, gpus=(replace(n.report.gpus[0], memory_used=300 * MiB),))
    s = snapshot(n)
    assert s.whole_free[0, 0] and s.free[0, 0] == 80 * GiB


@pytest.mark.parametrize("known,unknown,want_ids", [
    # a 30 GiB share of unknown GPU: best fit among 40 free (GPU 0) and 80 free (1..3) is GPU 0
    ([share("a", 0, 40)], Allocation("z", (), 30 * GiB, False), (0,)),
    # too big for GPU 0's 40 free: lowest-index GPU with the least room that fits
    ([share("a", 0, 40)], Allocation("z", (), 50 * GiB, False), (1,)),
    # 2 whole GPUs, GPU 0 shared: the lowest untouched ones
    ([share("a", 0, 40)], Allocation("z", (), 0, True, count=2), (1, 2)),
    # ids naming a GPU the node does not have (9) are not trusted either
    ([], Allocation("z", (9,), 10 * GiB, False), (0,)),
    # 2 whole GPUs where only GPU 3 is untouched: the second goes on the lowest taken one
    # (over-committing), because a running pod must be counted somewhere
    ([whole("a", 0, 1, 2)], Allocation("z", (), 0, True, count=2), (0, 3)),
])
def test_unknown_gpu_ids_are_inferred(known, unknown, want_ids):
    s = snapshot(node("n", 4, allocs=known + [unknown]))
    got = {a.pod_key: a for a in s.allocations[0]}["z"]
    assert got.gpu_ids == want_ids and got.inferred


def test_inference_is_deterministic():
    allocs = [Allocation(f"p{i}", (), 20 * GiB, False) for i in range(6)]
    a = snapshot(node("n", 4, allocs=allocs))
    b = snapshot(node("n", 4, allocs=list(reversed(allocs))))
    assert np.array_equal(a.committed, b.committed)


MUTATED = ("committed", "exclusive", "free", "whole_free", "max_free", "free_total", "partial_free",
           "whole_free_count")
# status, stale, usable, usable_total, unhealthy_count, memory_known follow from reports,
# hardware and the clock, never from allocations: a bind shares them
SHARED = ("gpu_mem_total", "used", "present", "healthy", "usable", "status", "product_code", "stale",
          "usable_total", "unhealthy_count", "memory_known")
DERIVED = ("status", "stale", "usable", "usable_total", "unhealthy_count", "memory_known", "free", "whole_free",
           "max_free", "free_total", "partial_free", "whole_free_count")


def test_copy_on_write():
    s0 = snapshot(node("a", 2), node("b", 2))
    s1 = s0.with_allocation("a", Allocation("ns/p1", (0,), 30 * GiB, False))
    s2 = s1.with_allocation("a", Allocation("ns/p2", (0,), 40 * GiB, False))
    # back to back on one GPU: 30 + 40 = 70 committed, 10 free; each snapshot keeps its own view
    assert (s0.committed[0, 0], s1.committed[0, 0], s2.committed[0, 0]) == (0, 30 * GiB, 70 * GiB)
    assert (s0.free[0, 0], s1.free[0, 0], s2.free[0, 0]) == (80 * GiB, 50 * GiB, 10 * GiB)
    for name in MUTATED:
        x0, x1, x2 = (getattr(x, name) for x in (s0, s1, s2))
        # an array copied where its rows changed, and shared, unread, where they came out the same
        assert (x1 is x0) == np.array_equal(x1, x0) and (x2 is x1) == np.array_equal(x2, x1), name
        assert x1 is x0 or not np.shares_memory(x0, x1), name
        assert x2 is x1 or not np.shares_memory(x1, x2), name
        assert not x2.flags.writeable, name
    # a share on a GPU nobody held: it is no longer whole-free; the second share on it changes neither
    assert s1.whole_free is not s0.whole_free and s2.whole_free is s1.whole_free
    assert s1.exclusive is s0.exclusive  # no whole GPU given
    for name in SHARED:
        assert getattr(s2, name) is getattr(s0, name), name
    with pytest.raises(ValueError):
        s2.committed[0, 0] = 0  # read-only: nobody can change a snapshot under a reader


# +0: a fresh, b stale (500 s old); +51: a stale too (61 s > 60); c has no report, never stale
@pytest.mark.parametrize("later_s", [0, 51, 700])
def test_a_snapshot_judged_later_derives_what_a_rebuild_then_would(later_s):
    nodes = [node("a", 2, reported_ago=10, allocs=[Allocation("ns/p", (0,), 30 * GiB, False)]),
             node("b", 2, reported_ago=500, healthy={1}), NodeState("c", 2, "A100", 40960)]
    moved = build_snapshot(nodes, NOW, 60).at(NOW + later_s)
    rebuilt = build_snapshot(nodes, NOW + later_s, 60)
    for name in DERIVED:
        assert np.array_equal(getattr(moved, name), getattr(rebuilt, name)), name
        assert not getattr(moved, name).flags.writeable, name


def test_a_bind_derives_what_a_rebuild_with_the_pod_would():
    alloc = Allocation("ns/p", (1,), 30 * GiB, False)
    bound = snapshot(node("a", 2), node("b", 2)).with_allocation("b", alloc)
    rebuilt = snapshot(node("a", 2), node("b", 2, allocs=[alloc]))
    for name in DERIVED:
        assert np.array_equal(getattr(bound, name), getattr(rebuilt, name)), name


def test_with_allocation_replaces_and_without_restores():
    s0 = snapshot(node("a", 2))
    s1 = s0.with_allocation("a", Allocation("ns/p", (0,), 30 * GiB, False))
    s2 = s1.with_allocation("a", Allocation("ns/p", (1,), 30 * GiB, False))  # same pod, moved: counted once
    assert (s2.committed[0] // GiB).tolist() == [0, 30]
    s3 = s2.without_allocation("a", "ns/p")
    assert np.array_equal(s3.free, s0.free) and s3.allocations[0] == ()
    assert s3.without_allocation("a", "ns/p") is s3  # releasing twice is harmless


def test_unknown_node_is_a_noop():
    s = snapshot(node("a", 2))
    assert s.with_allocation("ghost", Allocation("ns/p", (0,), GiB, False)) is s
    assert s.without_allocation("ghost", "ns/p") is s


def test_with_allocation_infers_bad_ids():
    s = snapshot(node("a", 2, allocs=[share("x", 0, 70)])).with_allocation(
        "a", Allocation("ns/p", (7,), 30 * GiB, False))
    p = {a.pod_key: a for a in s.allocations[0]}["ns/p"]
    assert p.gpu_ids == (1,) and p.inferred  # GPU 0 has 10 free, GPU 1 80: only 1 fits


def test_model_cache_and_products():
    m = "meta-llama/Llama-3.1-8B-Instruct"
    s = snapshot(node("a", models={m: (16 * GiB, "disk")}), node("b", product="NVIDIA-A100-SXM4-80GB"),
                 node("c", models={m: (16 * GiB, "gpu")}))
    c = s.model_cache[m]
    assert c.node_idx.tolist() == [0, 2] and c.bytes.tolist() == [16 * GiB] * 2
    assert [("gpu", "host-memory", "disk")[t] for t in c.tier] == ["disk", "gpu"]
    assert s.product_codes(["NVIDIA-A100*"]).tolist() == [s.product_code[1]]
    assert s.product_codes(["A100"]).tolist() == []  # exact unless a glob


def test_unreadable_model_cache_costs_locality_only():
    s = snapshot(NodeState("n", 1, "A100", 40960, replace(
        node("n", 1).report, errors=("gpusched.io/model-cache: not JSON",))))
    assert s.status[0] == snap.OK and s.model_cache == {} and any("model-cache" in n for n in s.notes)


@pytest.mark.parametrize("nodes,stale_after,msg", [
    ([NodeState("a"), NodeState("a")], 60, "unique"),
    ([NodeState("a")], 0, "positive"),
])
def test_bad_snapshot_input(nodes, stale_after, msg):
    with pytest.raises(SnapshotError, match=msg):
        build_snapshot(nodes, now=NOW, stale_after_s=stale_after)


def test_empty():
    s = snapshot()
    assert len(s) == 0 and s.indices(["a"]).tolist() == [-1]


def test_indices_are_rows_by_name_and_minus_one_for_a_node_not_there():
    s = snapshot(node("a"), node("b"), node("c"))
    assert s.indices(["c", "ghost", "a", "c"]).tolist() == [2, -1, 0, 2]
    assert s.indices([]).tolist() == []


def test_a_rebuild_with_the_same_nodes_keeps_the_names_and_index_objects():
    # readers (the extender's NodeRows) tell by identity that rows still mean the same nodes
    first = snapshot(node("a"), node("b"))
    same = build_snapshot([node("a"), node("b")], now=NOW, stale_after_s=600, previous=first)
    assert same.names is first.names and same.index is first.index
    assert first.with_allocation("a", Allocation("ns/p", (0,), 30 * GiB, False)).names is first.names
    # another node, or the same nodes in another order, is a new index: rows would differ
    for nodes in ([node("a"), node("b"), node("c")], [node("b"), node("a")]):
        other = build_snapshot(nodes, now=NOW, stale_after_s=600, previous=first)
        assert other.names is not first.names and other.index is not first.index
        assert other.indices(["b", "a"]).tolist() == [other.index["b"], other.index["a"]]


# ---------- rows derived afresh: with_nodes and edited against a rebuild

M1, M2 = "org/model-1", "org/model-2"
BASE = (node("a", 4, models={M1: (10 * GiB, "disk")}, allocs=[share("ns/x", 0, 30)]),
        node("b", 4, models={M1: (20 * GiB, "gpu"), M2: (5 * GiB, "disk")}),
        NodeState("c", 2, "A100", 40960))


@pytest.mark.parametrize("what, changed", [
    ("a GPU's use", node("a", 4, used={1: 30}, models={M1: (10 * GiB, "disk")}, allocs=[share("ns/x", 0, 30)])),
    ("a model cached", node("a", 4, models={M1: (10 * GiB, "disk"), M2: (7 * GiB, "host-memory")},
                            allocs=[share("ns/x", 0, 30)])),
    ("a model evicted", node("b", 4, models={M2: (5 * GiB, "disk")})),
    ("the last copy of a model evicted", node("b", 4, models={M1: (20 * GiB, "gpu")})),
    ("a product no node had", node("a", 4, product="NVIDIA-B200", allocs=[share("ns/x", 0, 30)])),
    ("an unreadable report", replace(node("a", 4), report=replace(node("a", 4).report, errors=("gpusched.io/gpus: x",)))),
    ("a stale report", node("a", 4, reported_ago=5000, allocs=[share("ns/x", 0, 30)])),
    ("a GPU unhealthy", node("a", 4, healthy={0, 2, 3}, allocs=[share("ns/x", 0, 30)])),
    ("fewer GPUs", node("a", 2, allocs=[share("ns/x", 0, 30)])),
    ("cordoned", replace(node("a", 4, allocs=[share("ns/x", 0, 30)]), gpu_count=0)),
    ("a label-only node's first report", node("c", 2, gib=40)),
    # GPU 0 gone from the report: the pod's GPU is guessed
    ("a report that loses the pod's GPU", NodeState("a", 4, "NVIDIA-H100-80GB-HBM3", 81920, replace(
        node("a", 4).report, gpus=node("a", 4).report.gpus[1:]), [share("ns/x", 0, 30)])),
])
def test_a_node_row_derived_afresh_equals_a_rebuild(what, changed):
    before = snapshot(*BASE)
    got = before.with_nodes([changed])
    want = snapshot(*[changed if n.name == changed.name else n for n in BASE])
    assert got is not None, what
    assert_same_snapshot(got, want)
    assert before.model_cache[M1].node_idx.tolist() == [0, 1]  # the old snapshot is untouched


def test_a_node_row_derived_afresh_shares_what_did_not_change():
    before = snapshot(*BASE)
    after = before.with_nodes([node("a", 4, used={1: 30}, models={M1: (10 * GiB, "disk")},
                                    allocs=[share("ns/x", 0, 30)])])
    assert after.used is not before.used and after.free is not before.free
    for name in ("gpu_mem_total", "present", "healthy", "committed", "exclusive", "status", "product_code",
                 "reported_at", "model_cache", "node_models", "report_error"):
        assert getattr(after, name) is getattr(before, name), name


@pytest.mark.parametrize("states", [
    [NodeState("ghost", 1)],  # not in the snapshot: its rows would move
    [node("a", 9)],  # wider than the snapshot's 4 GPUs
    [node("a", 4), node("a", 2)],  # the same node twice
])
def test_a_row_that_cannot_be_derived_alone_asks_for_a_rebuild(states):
    assert snapshot(*BASE).with_nodes(states) is None


def test_allocations_on_several_nodes_change_at_once_as_a_rebuild_would_count_them():
    before = snapshot(*BASE)
    # ns/x moves from a to b (b's GPU 2); an unknown-id pod lands on c and is guessed onto GPU 0
    moved = before.edited(drop=[("a", "ns/x"), ("ghost", "ns/x")],
                          add=[("b", share("ns/x", 2, 30)), ("c", Allocation("ns/y", (), 10 * GiB, False)),
                               ("ghost", share("ns/z", 0, 1))])
    want = snapshot(replace(BASE[0], allocations=[]), replace(BASE[1], allocations=[share("ns/x", 2, 30)]),
                    replace(BASE[2], allocations=[Allocation("ns/y", (), 10 * GiB, False)]))
    assert_same_snapshot(moved, want)
    assert before.edited(add=[("ghost", share("ns/z", 0, 1))], drop=[("a", "ns/nobody")]) is before


def test_a_row_emptied_by_one_drop_stays_empty_for_the_next_change():
    # a holds x and y; dropping both then counting x again leaves x alone (not x and y)
    two = snapshot(replace(BASE[0], allocations=[share("ns/x", 0, 30), share("ns/y", 1, 30)]), *BASE[1:])
    got = two.edited(drop=[("a", "ns/x"), ("a", "ns/y")], add=[("a", share("ns/x", 0, 30))])
    assert_same_snapshot(got, snapshot(*BASE))
    assert two.edited(drop=[("a", "ns/x"), ("a", "ns/y"), ("a", "ns/x")]).allocations[0] == ()


@pytest.mark.parametrize("a, b, want", [
    # the first true case wins, the default where none is; as np.select
    ([True, True, False, False], [True, False, True, False], [1, 1, 2, 9]),
    ([False], [False], [9]),
    ([], [], []),
])
def test_first_match_is_np_select(a, b, want):
    cases = [(np.array(a, bool), 1), (np.array(b, bool), np.full(len(b), 2))]
    got = snap.first_match(cases, 9)
    assert got.tolist() == want == np.select([c for c, _ in cases], [v for _, v in cases], 9).tolist()


# ---------- CPU columns


@pytest.mark.parametrize("allocatable,requested,want_free", [
    (96_000, 40_000, 56_000),       # 96 - 40 cores
    (96_000, 120_000, 0),           # requested past allocatable (static pods): none free, not negative
    (0, 40_000, CPU_UNKNOWN),       # allocatable not known: CPU limits nothing
    (-5, 0, CPU_UNKNOWN),           # a negative figure is not known
    (10**15, 0, 10**9),             # clamped to quantity.MAX_MILLICORES
    (96_000, -7, 96_000),           # a negative request counts 0
    (True, 0, CPU_UNKNOWN),         # not a number: not known
])
def test_cpu_columns_from_node_states(allocatable, requested, want_free):
    s = snapshot(replace(node("a"), cpu_allocatable=allocatable, cpu_requested=requested))
    assert int(s.cpu_free[0]) == want_free
    assert not s.cpu_free.flags.writeable and not s.cpu_requested.flags.writeable


def test_with_requested_patches_the_rows_a_rebuild_would_give():
    base = [node("a", cpu=96, ram_gib=512), node("b", cpu=128, cpu_used=8, ram_gib=1024, ram_used_gib=24), node("c")]
    s = snapshot(*base)
    got = s.with_requested({"a": (90_000, 500 * GiB), "b": (8_000, 24 * GiB), "nowhere": (5_000, 0)})
    want = snapshot(replace(base[0], cpu_requested=90_000, ram_requested=500 * GiB), *base[1:])
    assert_same_snapshot(got, want)
    assert got.cpu_free.tolist() == [6_000, 120_000, CPU_UNKNOWN]
    assert got.ram_free.tolist() == [12 * GiB, 1000 * GiB, RAM_UNKNOWN]
    assert s.cpu_free.tolist() == [96_000, 120_000, CPU_UNKNOWN]  # readers of the old one see no change
    assert s.ram_free.tolist() == [512 * GiB, 1000 * GiB, RAM_UNKNOWN]
    assert got.free is s.free and got.committed is s.committed  # GPU arrays shared, the row memo skips them
    assert s.with_requested({"b": (8_000, 24 * GiB)}) is s and s.with_requested({"nowhere": (1, 1)}) is s
    # memory alone moved: CPU columns shared
    mem_only = s.with_requested({"b": (8_000, 1100 * GiB)})
    assert mem_only.cpu_free is s.cpu_free and mem_only.ram_free.tolist() == [512 * GiB, 0, RAM_UNKNOWN]


@pytest.mark.parametrize("allocatable,requested,want_free", [
    (512 * GiB, 100 * GiB, 412 * GiB),
    (512 * GiB, 600 * GiB, 0),        # requested past allocatable: none free, not negative
    (0, 100 * GiB, RAM_UNKNOWN),      # allocatable not known: memory limits nothing
    (2**62, 0, 2**50),                # clamped to quantity.MAX_BYTES
    (False, 0, RAM_UNKNOWN),          # not a number: not known
])
def test_memory_columns_from_node_states(allocatable, requested, want_free):
    s = snapshot(replace(node("a"), ram_allocatable=allocatable, ram_requested=requested))
    assert int(s.ram_free[0]) == want_free
    assert not s.ram_free.flags.writeable


def test_with_nodes_derives_the_cpu_columns_afresh():
    s = snapshot(node("a", cpu=96, cpu_used=10), node("b", cpu=128))
    got = s.with_nodes([node("a", cpu=64, cpu_used=70)])
    assert got is not None and got.cpu_free.tolist() == [0, 128_000]
    assert got.cpu_allocatable.tolist() == [64_000, 128_000] and got.cpu_requested.tolist() == [70_000, 0]
