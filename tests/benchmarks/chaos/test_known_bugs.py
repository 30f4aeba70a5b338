"""Bugs the fault suite found in code its authors own (scheduler/extender/live.py, server.py),
kept as strict xfails so that the fix flips them (and is then made a plain test)."""
from __future__ import annotations

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import small
from scheduler.core import Allocation
from scheduler.extender.live import LiveState
from scheduler.extender.server import describe_node

NODE = "gpu-node-0000"


def committed(live: LiveState) -> dict[int, int]:
    return {g["index"]: g["committedMiB"] for g in describe_node(live.snapshot(), NODE)["gpus"] if g["committedMiB"]}


@pytest.mark.xfail(strict=True, reason="LiveState.forget drops the pod's confirmed allocation too; fix in live.py "
                                        "(re-apply self._pods[key] after removing the assumed one) or make a bind of "
                                        "an already-bound pod a no-op in Extender._bind")
def test_a_failed_bind_of_an_already_bound_pod_keeps_what_it_holds():
    # kube-scheduler retries a bind that took longer than its httpTimeout (2 s); the first one had
    # succeeded, so the retry reserves another GPU for the same pod, the API answers 409, and
    # forget() must leave the pod's real GPU counted.
    live = LiveState(stale_after_s=86400)
    live.set_nodes([node_body(small(1)[0])])
    pod = {"metadata": {"name": "p", "namespace": "ns", "annotations": {"gpusched.io/gpu-ids": "0"}},
           "spec": {"nodeName": NODE, "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
           "status": {"phase": "Running"}}
    live.set_pods([pod])
    assert committed(live) == {0: 81079}
    live.assume(NODE, Allocation(pod_key="ns/p", gpu_ids=(1,), memory_per_gpu=0, whole=True, count=1))
    live.forget(NODE, "ns/p")  # the retried Binding failed: 409, already bound
    assert committed(live) == {0: 81079}  # GPU 0 is still held by p
