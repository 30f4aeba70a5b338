"""filter and prioritize answer the same whether a request is read as rows (the compact
JSON Go writes, every name known) or decoded whole (any other JSON, or an unknown name)."""
from __future__ import annotations

import json

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from scheduler import contract
from scheduler.extender.live import LiveState
from scheduler.extender.server import Extender
from tests.scheduler.extender.test_bind import Api

NODES = ("gpu-a", "gpu-b", "gpu-c", "gpu-d")


def held(name: str, node: str, gpu: int, memory: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name,
                         "annotations": {contract.GPU_MEMORY: memory, contract.GPU_IDS: str(gpu),
                                         contract.PLACEMENT: json.dumps({"node": node, "gpus": [gpu]})}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}, "status": {"phase": "Running"}}


def extender() -> Extender:
    """gpu-a: 8 free H100s; gpu-b: every GPU holds 70Gi; gpu-c: 2 GPUs; gpu-d: 40Gi on GPU 0."""
    live = LiveState(stale_after_s=86400)
    live.set_nodes([node_body(NodeSpec(n, 2 if n == "gpu-c" else 8, "NVIDIA-H100-80GB-HBM3", H100_MIB))
                    for n in NODES])
    live.set_pods([held(f"b{g}", "gpu-b", g, "70Gi") for g in range(8)] + [held("d0", "gpu-d", 0, "40Gi")])
    api = Api()
    return Extender(live=live, binder=api.binder, get_pod=api.get_pod)


def pod(annotations: dict, gpus: str | None = None) -> dict:
    limits = {contract.GPU_RESOURCE: gpus} if gpus else {}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-p", "annotations": annotations},
            "spec": {"containers": [{"name": "c", "resources": {"limits": limits}}]}}


def go(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def spaced(obj: dict) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("p", [
    pod({contract.GPU_MEMORY: "20Gi", contract.MODEL: "org/m"}),  # fits a, c, d; not b (10Gi left per GPU)
    pod({}, gpus="4"),  # a and d (7 whole GPUs); not b or c
    pod({contract.GPU_MEMORY: "90Gi"}),  # nowhere: more than a GPU holds
    pod({}),  # not a GPU pod: every node
    pod({contract.GPU_MEMORY: "-5Gi"}),  # refused everywhere, with the reason
])
@pytest.mark.parametrize("names", [list(NODES), ["gpu-d", "gpu-b", "gpu-a"], ["gpu-c", "ghost", "gpu-a"]])
def test_filter_and_prioritize_answer_alike_read_as_rows_or_decoded(p, names):
    answers = []
    for encode in (go, spaced):
        ext = extender()
        filtered = json.loads(ext.filter(encode({"Pod": p, "Nodes": None, "NodeNames": names})))
        scored = json.loads(ext.prioritize(encode({"Pod": p, "Nodes": None, "NodeNames": filtered["NodeNames"]})))
        answers.append((filtered, scored))
    assert answers[0] == answers[1]
    assert set(answers[0][0]["NodeNames"]) | set(answers[0][0]["FailedNodes"]) | set(
        answers[0][0]["FailedAndUnresolvableNodes"]) == set(names)


def test_a_node_list_changed_while_filter_waited_is_judged_by_name():
    """Rows read against one snapshot's names mean nothing in a snapshot with other names."""
    ext = extender()
    before = ext.live.snapshot()
    ext.live.set_nodes([node_body(NodeSpec(n, 8, "NVIDIA-H100-80GB-HBM3", H100_MIB)) for n in ("gpu-z",) + NODES])
    after = ext.live.snapshot()
    assert after.names != before.names
    calls = iter([before, after])
    ext.live.snapshot = lambda: next(calls)  # the first read parses, the second judges
    out = json.loads(ext.filter(go({"Pod": pod({contract.GPU_MEMORY: "20Gi"}), "NodeNames": ["gpu-z", "gpu-a"]})))
    # read with `before`, gpu-z is unknown (decoded whole); judged on `after`, it fits
    assert (out["NodeNames"], out["FailedNodes"]) == (["gpu-z", "gpu-a"], {})
    calls = iter([before, after])
    out = json.loads(ext.filter(go({"Pod": pod({contract.GPU_MEMORY: "20Gi"}), "NodeNames": ["gpu-b", "gpu-a"]})))
    # read as rows 1 and 0 with `before`; on `after` those rows are gpu-a and gpu-z, which
    # both fit: only judging by name again finds gpu-b full
    assert out["NodeNames"] == ["gpu-a"] and list(out["FailedNodes"]) == ["gpu-b"]
