"""The kwok nodes' GPUs as DRA devices: what the chart's DRA plugin (gpusched agent --dra-only)
would publish on each node, so that claims of DeviceClass gpu.gpusched.io are allocated on the
test bed as on a cluster. The slices are written by the plugin's own SlicePublisher; the
DeviceClass is the one the chart renders (deploy/manifests/gpusched.yaml)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from benchmarks.testbed.profiles import NodeSpec, gpu_memory_bytes
from scheduler import contract
from scheduler.agent.dra.apiserver import SlicePublisher
from scheduler.kube.client import raw

RENDERED = Path(__file__).resolve().parents[2] / "deploy" / "manifests" / "gpusched.yaml"
_NS = uuid.UUID("6a1d3c2e-2b4f-4f4e-9a57-9d1e0c7b5a10")  # any fixed namespace: stable UUIDs per node/GPU


def gpu_uuid(node: str, index: int) -> str:
    """An NVML-shaped UUID (GPU-xxxxxxxx-xxxx-...), the same for a node's GPU every run: the DRA
    plugin publishes only such UUIDs and names each device by it, lowercased."""
    return f"GPU-{uuid.uuid5(_NS, f'{node}/{index}')}"


@dataclass(frozen=True)
class KwokGPU:
    """One kwok GPU as scheduler.agent.dra.devices.GPU sees an NVML reading."""
    index: int
    uuid: str
    name: str
    memory_total: int
    healthy: bool = True
    lost: bool = False

    @property
    def memory_usable(self) -> int:
        return self.memory_total  # as the node report has it: gpu_memory_bytes is already less the reservation


def kwok_gpus(spec: NodeSpec) -> tuple[KwokGPU, ...]:
    return tuple(KwokGPU(i, gpu_uuid(spec.name, i), spec.product, gpu_memory_bytes(spec)) for i in range(spec.gpus))


def device_class() -> dict[str, Any]:
    """The chart's DeviceClass gpu.gpusched.io, as rendered."""
    for d in yaml.safe_load_all(RENDERED.read_text()):
        if d and d["kind"] == "DeviceClass" and d["metadata"]["name"] == contract.DRA_DRIVER:
            return d
    raise RuntimeError(f"{RENDERED}: no DeviceClass {contract.DRA_DRIVER}")


def publish(api: Any, specs: Iterable[NodeSpec]) -> None:
    """The DeviceClass (created if missing) and one ResourceSlice per node, as its DRA plugin writes it."""
    code, _ = raw(api, "GET", f"/apis/resource.k8s.io/v1/deviceclasses/{contract.DRA_DRIVER}")
    if code == 404:
        raw(api, "POST", "/apis/resource.k8s.io/v1/deviceclasses", device_class())
    for spec in specs:
        pub = SlicePublisher(api, spec.name)
        if not pub.publish(kwok_gpus(spec)):
            raise RuntimeError(f"ResourceSlice of {spec.name}: {pub.last_error}")
