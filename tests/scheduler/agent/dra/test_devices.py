"""This node's GPUs as its ResourceSlice: one shareable device per healthy GPU."""
from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler.agent.dra.devices import device_name, resource_slice
from tests.scheduler.agent.dra.gpus import h100s

GPUS = h100s()


#  NVML UUID                                            -> device name (a DNS label), None: not publishable
NAMES = [
    ("GPU-5a1c00e2-7d3b-4c1f-9e0a-3f6b2c81d400",           "gpu-5a1c00e2-7d3b-4c1f-9e0a-3f6b2c81d400"),
    ("GPU-5A1C00E2-7D3B-4C1F-9E0A-3F6B2C81D400",           "gpu-5a1c00e2-7d3b-4c1f-9e0a-3f6b2c81d400"),
    ("MIG-5a1c00e2-7d3b-4c1f-9e0a-3f6b2c81d400",           None),   # a MIG instance: not this driver's device
    ("GPU-5a1c00e2-7d3b-4c1f-9e0a-3f6b2c81d400/../x",      None),
    ("",                                                   None),
]


@pytest.mark.parametrize("uuid, name", NAMES)
def test_a_device_is_named_by_its_gpus_uuid(uuid, name):
    assert device_name(uuid) == name


def test_each_healthy_gpu_is_one_shareable_device_with_its_usable_memory():
    gpus = list(GPUS)
    gpus[2] = replace(gpus[2], healthy=False)  # an XID: not offered
    gpus[6] = replace(gpus[6], lost=True, healthy=False)
    s = resource_slice("gpu-node-7", gpus, 3, node_uid="c0ffee")
    assert s["metadata"] == {"name": "gpu-node-7-gpu.gpusched.io", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Node", "name": "gpu-node-7", "uid": "c0ffee", "controller": True}]}
    spec = s["spec"]
    assert (spec["driver"], spec["nodeName"], spec["pool"]) == \
        ("gpu.gpusched.io", "gpu-node-7", {"name": "gpu-node-7", "generation": 3, "resourceSliceCount": 1})
    assert [d["attributes"]["index"]["int"] for d in spec["devices"]] == [0, 1, 3, 4, 5, 7]
    d0 = spec["devices"][0]
    # usable = total 85520809984 - the driver's reservation 503316480 = 85017493504
    assert d0 == {"name": "gpu-5a1c00e2-7d3b-4c1f-9e0a-3f6b2c81d400",
                  "attributes": {"uuid": {"string": "GPU-5a1c00e2-7d3b-4c1f-9e0a-3f6b2c81d400"}, "index": {"int": 0},
                                 "productName": {"string": "NVIDIA H100 80GB HBM3"}},
                  "capacity": {"memory": {"value": "85017493504"}},
                  "allowMultipleAllocations": True}
