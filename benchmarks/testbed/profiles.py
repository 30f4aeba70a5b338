"""GPU node profiles for the test bed: what kwok's fake nodes claim to have.

Node objects carry what NVIDIA's device plugin and GPU feature discovery would put
there (capacity `nvidia.com/gpu`, labels `nvidia.com/gpu.product` and
`nvidia.com/gpu.memory` in MiB) and what the gpusched node agent would publish
(`gpusched.io/gpus`, `gpusched.io/model-cache`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.traces import alibaba_dir
from scheduler.nodeinfo import MiB

# The Alibaba trace names GPU models but not their memory; G2 and G3 are undisclosed.
# These are the sizes we assume (the products' usable memory as nvidia-smi shows it).
ALIBABA_GPU_MIB: dict[str, tuple[str, int]] = {
    "P100": ("Tesla-P100-PCIE-16GB", 16280),
    "T4": ("Tesla-T4", 15360),
    "V100M16": ("Tesla-V100-SXM2-16GB", 16160),
    "V100M32": ("Tesla-V100-SXM2-32GB", 32510),
    "A10": ("NVIDIA-A10", 23028),
    "G1": ("G1-24GB", 24576),  # undisclosed; assumed A10-class
    "G2": ("G2-80GB", 81920),  # undisclosed 8-GPU type; assumed A100-80GB-class
    "G3": ("G3-80GB", 81920),  # undisclosed 8-GPU type; assumed H800-class
}
H100_MIB = 81559  # NVIDIA H100 80GB HBM3: nvidia-smi's Total, and GPU feature discovery's label
# The driver keeps about 480 MiB of each H100 (NVML v2 `reserved`); the node agent reports
# total minus that as the GPU's memory, because pods can never have it.
H100_RESERVED_MIB = 480


@dataclass(frozen=True)
class NodeSpec:
    name: str
    gpus: int
    product: str
    gpu_memory_mib: int
    reserved_mib: int = 0  # driver reservation per GPU, not usable by pods
    cpu_milli: int = 128_000
    memory_mib: int = 1_048_576
    # model id -> (bytes, tier): what the node's cache holds at start
    cached_models: dict[str, tuple[int, str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


class ProfileError(ValueError):
    pass


def small(n: int) -> list[NodeSpec]:
    """n nodes, each 8 x H100 80GB: the profile the tests use."""
    return [NodeSpec(f"gpu-node-{i:04d}", 8, "NVIDIA-H100-80GB-HBM3", H100_MIB, H100_RESERVED_MIB) for i in range(n)]


def alibaba_nodes_csv() -> Path:
    return alibaba_dir() / "openb_node_list_gpu_node.csv"


def alibaba(n: int, path: Path | None = None) -> list[NodeSpec]:
    """The first n nodes of the Alibaba GPU trace's node list (1,213 nodes; FGD, ATC'23)."""
    path = path or alibaba_nodes_csv()
    if not path.is_file():
        raise ProfileError(f"Alibaba node list not found at {path} (set GPUSCHED_TRACES to the traces directory)")
    out: list[NodeSpec] = []
    with path.open(newline="") as f:
        for row_no, row in enumerate(csv.DictReader(f), start=2):
            if len(out) >= n:
                break
            try:
                gpus = int(row["gpu"])
                product, mib = ALIBABA_GPU_MIB[row["model"]]
                cpu, mem = int(row["cpu_milli"]), int(row["memory_mib"])
            except (KeyError, ValueError, TypeError) as exc:
                raise ProfileError(f"{path}:{row_no}: unreadable node row ({exc!r})") from None
            out.append(NodeSpec(row["sn"], gpus, product, mib, cpu_milli=cpu, memory_mib=mem))
    if len(out) < n:
        raise ProfileError(f"the Alibaba node list has {len(out)} nodes; asked for {n}")
    return out


PROFILES: dict[str, Callable[[int], list[NodeSpec]]] = {"small": small, "alibaba": alibaba}


def nodes_for(profile: str, n: int) -> list[NodeSpec]:
    if profile not in PROFILES:
        raise ProfileError(f"unknown GPU profile {profile!r}; choose one of: {', '.join(sorted(PROFILES))}")
    if n < 1:
        raise ProfileError(f"--nodes must be at least 1, got {n}")
    return PROFILES[profile](n)


def gpu_memory_bytes(spec: NodeSpec) -> int:
    """What the node agent would report per GPU: the memory pods can use."""
    return (spec.gpu_memory_mib - spec.reserved_mib) * MiB
