"""When the agent writes its Node (rows show the arithmetic), and what it writes."""
from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from scheduler import contract, nodeinfo
from scheduler.agent.publish import (NodePublisher, _api_error, gpu_labels, label_value, report_changes, should_publish)
from scheduler.nodeinfo import GPU, CachedModel, NodeReport
from tests.scheduler.agent.fakes import FakeCoreV1

GiB, MiB = 2**30, 2**20
TOTAL = 81079 * MiB


def report(used0=10 * GiB, healthy3=True, models=(("org/a", 16 * GiB, "disk"),), n=8, util0=0.0):
    gpus = tuple(GPU(i, f"GPU-{i}", TOTAL, used0 if i == 0 else 0, util0 if i == 0 else 0.0,
                     healthy3 if i == 3 else True, "NVIDIA-H100-80GB-HBM3") for i in range(n))
    return NodeReport(gpus=gpus, models=tuple(CachedModel(*m) for m in models))


BASE = report()
# defaults: min_interval 30 s, heartbeat 120 s, threshold 1 GiB
ROWS = [
    # name,                           last, current,                                  last_t, now, write, reason
    ("first report",                   None, BASE,                                     0, 0, True, "first report"),
    ("nothing changed at 100 s",       BASE, BASE,                                     0, 100, False, "no change"),
    ("utilisation alone: no write",    BASE, report(util0=95.0),                       0, 100, False, "no change"),
    ("+1.5Gi after 40 s >= 30",        BASE, report(used0=11.5 * GiB),                 0, 40, True, "GPU 0 memory used +1.5Gi"),
    ("+1.5Gi after 10 s < 30: wait 20", BASE, report(used0=11.5 * GiB),                0, 10, False, "rate-limited for 20s"),
    ("-2Gi after 31 s",                BASE, report(used0=8 * GiB),                    0, 31, True, "GPU 0 memory used -2Gi"),
    ("+0.5Gi <= 1Gi: not a change",    BASE, report(used0=10.5 * GiB),                 0, 119, False, "no change"),
    ("exactly +1Gi is not > 1Gi",      BASE, report(used0=11 * GiB),                   0, 60, False, "no change"),
    ("heartbeat at 120 s",             BASE, report(used0=10.5 * GiB),                 0, 120, True, "heartbeat"),
    ("heartbeat at 1000+120",          BASE, BASE,                                     1000, 1120, True, "heartbeat"),
    ("GPU 3 unhealthy after 30 s",     BASE, report(healthy3=False),                   0, 30, True, "GPU 3 unhealthy"),
    ("GPU 3 unhealthy after 29 s",     BASE, report(healthy3=False),                   0, 29, False, "rate-limited for 1s"),
    ("model added",                    BASE, report(models=(("org/a", 16 * GiB, "disk"), ("org/b", GiB, "disk"))),
     0, 45, True, "models +org/b"),
    ("model removed",                  BASE, report(models=()),                        0, 45, True, "models -org/a"),
    ("tier change",                    BASE, report(models=(("org/a", 16 * GiB, "host-memory"),)),
     0, 45, True, "org/a tier disk -> host-memory"),
    ("GPU count change",               BASE, report(n=7),                              0, 45, True, "GPU count 8 -> 7"),
    ("clock went back",                BASE, BASE,                                     100, 50, True, "clock went back"),
]


@pytest.mark.parametrize("name, last, current, last_t, now, write, reason", ROWS, ids=[r[0] for r in ROWS])
def test_should_publish(name, last, current, last_t, now, write, reason):
    got, why = should_publish(last, current, last_t, now)
    assert got is write, why
    assert reason in why


def test_custom_thresholds():
    # 256 MiB threshold: +0.5Gi is a change; 5 s min interval: written at 6 s
    assert should_publish(BASE, report(used0=10.5 * GiB), 0, 6, min_interval_s=5, heartbeat_s=60,
                          mem_threshold_bytes=256 * MiB) == (True, "GPU 0 memory used +512Mi")


def test_reported_at_alone_is_not_a_change():
    from datetime import datetime, timezone
    a = NodeReport(gpus=BASE.gpus, models=BASE.models, reported_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    b = NodeReport(gpus=BASE.gpus, models=BASE.models, reported_at=datetime(2025, 1, 2, tzinfo=timezone.utc))
    assert report_changes(a, b, GiB) == []


def test_write_budget_for_1000_nodes():
    """1,000 quiet nodes at the default heartbeat: 1000 / 120 = 8.3 writes a second, < 10."""
    from scheduler.agent.publish import DEFAULT_HEARTBEAT_S
    assert 1000 / DEFAULT_HEARTBEAT_S < 10
    # busy nodes: never more than one write per node per min interval (1000 / 30 = 33 a second)
    writes, last = 0, (BASE, 0.0)
    for step in range(1, 121):  # memory moves by 2 GiB every second for two minutes
        cur = report(used0=(step * 2 * GiB) % (64 * GiB))
        ok, _ = should_publish(last[0], cur, last[1], float(step))
        if ok:
            writes += 1
            last = (cur, float(step))
    assert writes == 4  # at 30, 60, 90, 120 s


@pytest.mark.parametrize("name, value", [
    ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3"),
    ("Tesla T4", "Tesla-T4"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"),
    ("  weird/name (rev 2)  ", "weird-name-rev-2"),
    ("x" * 100, "x" * 63),
])
def test_label_value(name, value):
    assert label_value(name) == value


def test_gpu_labels():
    assert gpu_labels("NVIDIA H100 80GB HBM3", 81559, 8) == {
        contract.GPU_PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3", contract.GPU_MEMORY_LABEL: "81559",
        contract.GPU_COUNT_LABEL: "8"}
    assert gpu_labels(None, None, 0) == {}


def test_publish_patches_only_own_annotations_and_gpu_labels():
    api = FakeCoreV1()
    pub = NodePublisher(api, "gpu-7")
    labels = gpu_labels("NVIDIA H100 80GB HBM3", 81559, 8)
    assert pub.publish(BASE, labels)
    (name, body, kw), = api.patches
    assert name == "gpu-7"
    assert kw["_content_type"] == "application/merge-patch+json" and kw["field_manager"] == "gpusched-agent"
    assert kw["_request_timeout"]
    assert set(body) == {"metadata"} and set(body["metadata"]) == {"annotations", "labels"}
    assert set(body["metadata"]["annotations"]) == {contract.GPUS, contract.MODEL_CACHE}
    assert body["metadata"]["labels"] == labels
    back = nodeinfo.report_from_annotations(body["metadata"]["annotations"])  # the extender's decoder
    assert back.errors == () and back.models == BASE.models and len(back.gpus) == 8


def test_publish_without_labels_leaves_labels_alone():
    api = FakeCoreV1()
    NodePublisher(api, "n").publish(NodeReport())
    assert "labels" not in api.patches[0][1]["metadata"]


@pytest.mark.parametrize("error", [ApiException(status=403, reason="Forbidden"),
                                   ApiException(status=500, reason="Internal"),
                                   ConnectionRefusedError(111, "refused"), TimeoutError("read timed out")])
def test_api_errors_never_raise(error):
    api = FakeCoreV1()
    api.fail = error
    pub = NodePublisher(api, "n")
    assert pub.publish(BASE) is False and pub.last_error
    assert pub.event("X", "y") is False
    assert pub.node_annotations() is None


def test_events_are_deduplicated_and_rate_limited():
    now = [0.0]
    api = FakeCoreV1()
    pub = NodePublisher(api, "gpu-7", clock=lambda: now[0], event_repeat_s=600, max_events_per_minute=3)
    assert pub.event("GPULost", "GPU 3 lost")
    assert not pub.event("GPULost", "GPU 3 lost")  # same again within 600 s
    now[0] = 601
    assert pub.event("GPULost", "GPU 3 lost")
    assert pub.event("A", "1") and pub.event("B", "2")
    assert not pub.event("C", "3")  # a fourth within a minute
    now[0] = 700
    assert pub.event("C", "3")
    ns, body = api.events[0]
    assert ns == "default"
    assert body["involvedObject"] == {"kind": "Node", "name": "gpu-7", "uid": "gpu-7", "apiVersion": "v1"}
    assert body["type"] == "Warning" and body["reason"] == "GPULost"


def test_long_event_messages_are_truncated():
    api = FakeCoreV1()
    NodePublisher(api, "n").event("R", "x" * 5000)
    assert len(api.events[0][1]["message"]) == 1024


def test_node_annotations():
    api = FakeCoreV1({contract.PREFETCH: "[]"})
    pub = NodePublisher(api, "n")
    assert pub.node_annotations() == {contract.PREFETCH: "[]"}
    api.missing = True
    assert pub.node_annotations() is None and "not found" in pub.last_error


def test_node_name_required():
    with pytest.raises(ValueError):
        NodePublisher(FakeCoreV1(), "")


@pytest.mark.parametrize("error,said", [
    (ApiException(status=409, reason="Conflict"), "HTTP 409 Conflict"),
    # urllib3's MaxRetryError wraps the connect failure in object reprs: one short line instead
    (MaxRetryError(None, "/api/v1/nodes", NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused")),
     "cannot reach the API server: [Errno 111] Connection refused"),
    (ValueError("odd"), "ValueError: odd"),
])
def test_api_errors_are_said_in_one_short_line(error, said):
    assert _api_error(error) == said
