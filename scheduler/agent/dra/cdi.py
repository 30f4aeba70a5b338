"""A prepared claim as a CDI spec (Container Device Interface, cdiVersion 0.6.0): the
container edits the runtime applies to every container that uses the claim.

What the edits enforce, and what they only tell (docs/ownership.md, "Node side"):
- Which GPUs: NVIDIA_VISIBLE_DEVICES names exactly the claim's GPUs by UUID, so the NVIDIA
  container toolkit mounts only their /dev/nvidiaN; CDI env edits replace a variable of
  the same name from the image (CUDA images set NVIDIA_VISIBLE_DEVICES=all).
  CUDA_VISIBLE_DEVICES (the same UUIDs) and CUDA_DEVICE_ORDER=PCI_BUS_ID keep CUDA on
  them even where the device nodes are all present (a privileged container). With
  `nvidia_cdi`, NVIDIA's own CDI device `nvidia.com/gpu=<UUID>` (nvidia-ctk cdi generate,
  the GPU Operator's CDI mode) is returned as well, which injects the device nodes itself.
- How much memory, for a share: neither CUDA nor the driver caps a process's GPU memory.
  The cap is carried three ways: GPUSCHED_GPU_MEMORY_BYTES, GPUSCHED_GPU_MEMORY_UTILIZATION
  (the fraction of the GPU's total that vLLM's --gpu-memory-utilization takes, rounded
  down to 0.001) and CUDA_MPS_PINNED_DEVICE_MEM_LIMIT, which the CUDA MPS server enforces
  when the node runs MPS; without MPS the server has to obey the first two.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from scheduler import contract
from scheduler.agent.dra.claims import UID_RE, ClaimPlan

CDI_VERSION = "0.6.0"
MiB = 2**20


def device_id(claim_uid: str) -> str:
    """The CDI device the kubelet hands the runtime for this claim: 'gpu.gpusched.io/claim=<uid>'."""
    return f"{contract.CDI_KIND}={claim_uid}"


def env(plan: ClaimPlan) -> list[str]:
    """The environment a container of this claim gets ("KEY=value", sorted by key)."""
    uuids = ",".join(g.uuid for g in plan.gpus)
    out = {
        "NVIDIA_VISIBLE_DEVICES": uuids,
        "CUDA_VISIBLE_DEVICES": uuids,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "GPUSCHED_CLAIM": f"{plan.ref.namespace}/{plan.ref.name}",
    }
    shares = [g for g in plan.gpus if not g.whole]
    if shares:
        out["GPUSCHED_GPU_MEMORY_BYTES"] = str(min(g.consumed for g in shares))
        # vLLM's fraction is of the GPU's total memory (torch.cuda.mem_get_info); thousandths
        # rounded down, so the server never takes more than the share
        frac = min((g.consumed * 1000) // g.memory_total for g in shares)
        out["GPUSCHED_GPU_MEMORY_UTILIZATION"] = f"{frac / 1000:.3f}"
        # MPS numbers devices as the client sees them: positions in CUDA_VISIBLE_DEVICES
        out["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = ",".join(
            f"{i}={(g.consumed if not g.whole else g.capacity) // MiB}M" for i, g in enumerate(plan.gpus))
    return [f"{k}={v}" for k, v in sorted(out.items())]


def spec(plan: ClaimPlan) -> dict[str, Any]:
    return {
        "cdiVersion": CDI_VERSION,
        "kind": contract.CDI_KIND,
        "devices": [{"name": plan.ref.uid, "containerEdits": {"env": env(plan)}}],
    }


def cdi_ids(plan: ClaimPlan, uuid: str, nvidia_cdi: bool) -> list[str]:
    """CDI devices for one GPU of the claim: the claim's own (every GPU lists it, as NVIDIA's
    DRA driver does: a container given any request of the claim gets its edits), and
    NVIDIA's device for that GPU where the node has NVIDIA's CDI specs."""
    return [device_id(plan.ref.uid)] + ([f"nvidia.com/gpu={uuid}"] if nvidia_cdi else [])


class SpecDir:
    """The CDI spec files of this driver in one directory (/var/run/cdi: transient, as the
    claims are; the kubelet prepares them again after a reboot)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def path(self, claim_uid: str) -> Path:
        if not UID_RE.fullmatch(claim_uid):  # never let a caller's string pick the file
            raise ValueError(f"claim uid {claim_uid!r} is not a UUID")
        return self.dir / f"{contract.DRA_DRIVER}-claim_{claim_uid}.json"

    def write(self, plan: ClaimPlan) -> Path:
        """Write (or rewrite, the same bytes) the claim's spec atomically: a runtime reading the
        directory sees the old file or the new one, never half of one."""
        path = self.path(plan.ref.uid)
        self.dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(spec(plan), indent=2, sort_keys=True).encode() + b"\n"
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # the runtime (root) reads it; nothing in it is secret
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def remove(self, claim_uid: str) -> bool:
        """Remove the claim's spec; False when there was none (unprepare is idempotent)."""
        try:
            self.path(claim_uid).unlink()
        except FileNotFoundError:
            return False
        return True

    def claims(self) -> list[str]:
        """UIDs of the claims with a spec here."""
        prefix, out = f"{contract.DRA_DRIVER}-claim_", []
        for p in self.dir.glob(f"{prefix}*.json"):
            uid = p.name[len(prefix):-len(".json")]
            if UID_RE.fullmatch(uid):
                out.append(uid)
        return sorted(out)
