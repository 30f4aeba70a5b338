"""The extender believes a pod's gpu-ids only where they are what its own bind wrote: the
placement beside them names the pod's node and the same GPUs. Anything else (ids alone,
a placement for another node or other GPUs, unreadable JSON) is counted where the pod
most likely sits (inferred), never where the annotation says."""
from __future__ import annotations

import json

import pytest

from scheduler import contract
from scheduler.core.objects import allocation_of, trusted_gpu_ids


def placement(node: str, gpus) -> str:
    return json.dumps({"node": node, "gpus": gpus})


# (annotations on a pod bound to n1, ids trusted)
ROWS = [
    ({contract.GPU_IDS: "2", contract.PLACEMENT: placement("n1", [2])}, (2,)),
    ({contract.GPU_IDS: "0,1", contract.PLACEMENT: placement("n1", [0, 1])}, (0, 1)),
    ({contract.GPU_IDS: "0,1,2,3,4,5,6,7"}, None),  # ids alone: issue 13's forgery
    ({contract.GPU_IDS: "2", contract.PLACEMENT: placement("n2", [2])}, None),  # another node's placement
    ({contract.GPU_IDS: "2", contract.PLACEMENT: placement("n1", [3])}, None),  # other GPUs
    ({contract.GPU_IDS: "0,1", contract.PLACEMENT: placement("n1", [1, 0])}, None),  # not as written
    ({contract.GPU_IDS: "1", contract.PLACEMENT: placement("n1", [True])}, None),  # true is not GPU 1
    ({contract.GPU_IDS: "2", contract.PLACEMENT: "{not json"}, None),
    ({contract.GPU_IDS: "2", contract.PLACEMENT: "[2]"}, None),
    ({contract.GPU_IDS: "2", contract.PLACEMENT: "[" * 100000}, None),  # too deep to read: not trusted, no crash
    ({contract.PLACEMENT: placement("n1", [2])}, None),  # nothing to trust
]


@pytest.mark.parametrize("annotations,want", ROWS)
def test_trusted_gpu_ids(annotations, want):
    assert trusted_gpu_ids("n1", annotations) == want


def test_a_forged_pod_is_counted_once_where_it_most_likely_is_not_where_it_says():
    forged = {"metadata": {"name": "f", "namespace": "t",
                           "annotations": {contract.GPU_MEMORY: "80Gi", contract.GPU_IDS: "0,1,2,3,4,5,6,7"}},
              "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}, "status": {"phase": "Running"}}
    node, alloc = allocation_of(forged)
    assert node == "n1" and alloc.gpu_ids == () and not alloc.whole and alloc.count == 1
