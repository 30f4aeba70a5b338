"""The GPUs the DRA tests prepare: the agent's recorded 8x H100 node, read through the
agent's own NVML reader (the code a GPU node runs, over a recording)."""
from __future__ import annotations

from pathlib import Path

from scheduler.agent.nvml import GPUInfo, RecordedNVML, read_gpus

DATA = Path(__file__).resolve().parents[1] / "data"


def h100s() -> tuple[GPUInfo, ...]:
    return read_gpus(RecordedNVML.load(str(DATA / "nvml-8xh100-10gib.json"))).gpus


def claim(uid: str, results: list[dict], *, namespace: str = "team-a", name: str = "llama-gpu") -> dict:
    """A ResourceClaim as the API server returns it once kube-scheduler allocated it."""
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"namespace": namespace, "name": name, "uid": uid},
            "status": {"allocation": {"devices": {"results": results}}}}


def result(device: str, pool: str, *, memory: str | None = None, request: str = "gpu",
           driver: str = "gpu.gpusched.io", share_id: str | None = None) -> dict:
    r: dict = {"request": request, "driver": driver, "pool": pool, "device": device}
    if memory is not None:
        r["consumedCapacity"] = {"memory": memory}
    if share_id is not None:
        r["shareID"] = share_id
    return r
