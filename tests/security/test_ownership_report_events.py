"""An over-claiming node report (issue 13: 64 GPUs x 16 TiB on an 8-GPU node) is clamped
and refused, and the extender says so on the Node: a Warning Event per new reason,
rate-limited, posted off the watch thread."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from scheduler import contract
from scheduler.core import snapshot as snap
from scheduler.extender.live import LiveState
from scheduler.extender.node_events import REASON, NodeEvents, event_body
from scheduler.nodeinfo import GPU, MiB, encode_gpus

AT = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def node(gpus: int = 8, mib: int = H100_MIB) -> dict:
    n = node_body(NodeSpec("n1", 8, "NVIDIA-H100-80GB-HBM3", H100_MIB), now=AT)  # kubelet: 8 nvidia.com/gpu
    n["metadata"]["annotations"][contract.GPUS] = encode_gpus([GPU(i, f"G{i}", mib * MiB, 0) for i in range(gpus)])
    return n


@pytest.mark.parametrize("gpus,mib,status,said", [
    (8, H100_MIB, snap.OK, None),
    (64, H100_MIB, snap.BAD_REPORT, "GPU index 8 and more reported, but the node's capacity is 8"),
    (8, 16 * 2**20, snap.BAD_REPORT, "memoryTotalMiB: 16777216 is outside 1..1048576"),  # 16 TiB per GPU
])
def test_an_overclaiming_report_is_refused_and_said_once(gpus, mib, status, said):
    told: list[tuple[str, str]] = []
    live = LiveState(stale_after_s=10**9, clock=lambda: AT.timestamp(), on_report_error=lambda *a: told.append(a))
    live.set_nodes([node(gpus, mib)])
    s = live.snapshot()
    assert s.status[0] == status and s.gpus <= 8  # the lie never widens the arrays
    if said is None:
        assert told == []
        return
    assert len(told) == 1 and told[0][0] == "n1" and said in told[0][1], told
    live.on_node("MODIFIED", copy.deepcopy(node(gpus, mib)))  # a heartbeat: the same reason is not said again
    assert len(told) == 1
    live.on_node("MODIFIED", node())  # fixed: nothing to say, and the next error is said again
    live.on_node("MODIFIED", node(gpus, mib))
    assert len(told) == 2


def test_events_are_posted_once_per_reason_and_rate_limited():
    posted: list[dict] = []
    now = [0.0]
    ev = NodeEvents(posted.append, repeat_s=3600, max_per_minute=3, clock=lambda: now[0])
    for _ in range(5):
        ev.report_error("n1", "same")
    assert ev.drain(timeout=0) == 1  # one Event for five identical reports
    for i in range(5):
        ev.report_error(f"n{i}", "other")
    assert ev.drain(timeout=0) == 2  # 3 a minute in all
    now[0] = 61.0
    ev.report_error("n4", "other")
    assert ev.drain(timeout=0) == 1
    body = posted[0]
    assert body["involvedObject"] == {"kind": "Node", "name": "n1", "uid": "n1", "apiVersion": "v1"}
    assert body["reason"] == REASON and body["type"] == "Warning" and body["message"] == "same"


def test_a_failing_api_never_raises_into_the_poster():
    def boom(body):
        raise ConnectionError("api down")
    ev = NodeEvents(boom)
    ev.report_error("n1", "x")
    assert ev.drain(timeout=0) == 0


def test_event_body_names_are_unique_and_messages_bounded():
    a, b = (event_body("n1", "m" * 5000, AT, seq) for seq in (1, 2))
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert len(a["message"]) == 1024


@pytest.mark.integration
def test_the_extender_records_a_warning_event_on_an_overclaiming_node(gpusched, core):
    """On the test bed: a Node whose report claims 64 GPUs (its kubelet: 8) gets a Warning
    Event from the running extender, and the extender does not offer it to GPU pods."""
    from tests.helpers import eventually

    body = node(64)
    body["metadata"]["name"] = name = "ownership-liar"
    body["metadata"]["labels"]["kubernetes.io/hostname"] = name
    body["metadata"]["annotations"][contract.REPORTED_AT] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    core.create_node(body)
    try:
        def events():
            return [e for e in core.list_namespaced_event("default", field_selector=f"involvedObject.name={name}").items
                    if e.reason == REASON]
        (ev,) = eventually(events, timeout=30, what="a GpuschedReportRejected Event on the Node")
        assert ev.type == "Warning" and "capacity is 8" in ev.message and ev.involved_object.kind == "Node"
        seen = eventually(lambda: gpusched.debug_node(name).get("reportError"), timeout=30,
                          what="the clamp in the extender's snapshot")
        assert "capacity is 8" in seen
        d = gpusched.debug_node(name)
        assert len(d["gpus"]) == 8 and not any(g["usable"] for g in d["gpus"]), d
    finally:
        core.delete_node(name)
