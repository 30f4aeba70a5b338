"""The models of the simulated fleet and what one replica of each asks the scheduler for.

Sizes are bf16 checkpoints (2 bytes per parameter, rounded to 0.1 GiB) of public
instruction-tuned models from 0.5B to 72B parameters, 1 to 135 GiB; `variants` copies
of each (fine-tunes: same size, different weights, so different cache entries) make
the catalogue larger than a node's caches, as a fleet serving many fine-tunes is.

A replica needs its weights plus room for the KV cache and activations:
    need = KV_FACTOR x weights + OVERHEAD_GIB
and asks for
- a share of one GPU (`gpusched.io/gpu-memory: ceil(need) GiB`, no `nvidia.com/gpu`)
  when need <= SHARE_MAX_GIB: small models share GPUs, as vLLM with
  --gpu-memory-utilization lets them;
- otherwise `nvidia.com/gpu: n` whole GPUs, n the smallest power of two (tensor
  parallel sizes) with n x GPU memory >= need: a 135 GiB model needs 4 H100s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scheduler.core import PodRequest

GiB = 2**30
KV_FACTOR = 1.3
OVERHEAD_GIB = 6.0
SHARE_MAX_GIB = 40.0
H100_USABLE_BYTES = 81559 * 2**20  # an H100 80GB HBM3 as nvidia-smi shows it (the test bed's figure)

# (name, GiB of bf16 weights)
BASE_MODELS: tuple[tuple[str, float], ...] = (
    ("Qwen/Qwen2.5-0.5B-Instruct", 1.0),
    ("meta-llama/Llama-3.2-1B-Instruct", 2.3),
    ("meta-llama/Llama-3.2-3B-Instruct", 6.0),
    ("Qwen/Qwen2.5-7B-Instruct", 14.2),
    ("meta-llama/Llama-3.1-8B-Instruct", 15.0),
    ("google/gemma-2-9b-it", 17.2),
    ("mistralai/Mistral-Nemo-Instruct-2407", 22.8),
    ("Qwen/Qwen2.5-14B-Instruct", 27.5),
    ("google/gemma-2-27b-it", 50.7),
    ("Qwen/Qwen2.5-32B-Instruct", 61.0),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", 87.0),
    ("meta-llama/Llama-3.1-70B-Instruct", 131.4),
    ("Qwen/Qwen2.5-72B-Instruct", 135.4),
)


@dataclass(frozen=True)
class Model:
    name: str
    bytes: int
    whole_gpus: int  # 0 = a share
    gpu_memory: int  # bytes per GPU for a share; 0 for whole GPUs

    @property
    def gpus(self) -> float:
        """GPUs one replica holds, a share as a fraction of an H100."""
        return float(self.whole_gpus) if self.whole_gpus else self.gpu_memory / H100_USABLE_BYTES

    def request(self) -> PodRequest:
        """The PodRequest parse_pod reads from this replica's pod (model, model-bytes and
        gpu-memory annotations, nvidia.com/gpu limits)."""
        return PodRequest(whole_gpus=self.whole_gpus, gpu_memory=self.gpu_memory, model=self.name,
                          model_bytes=self.bytes)


def sizing(weights: int, gpu_bytes: int = H100_USABLE_BYTES) -> tuple[int, int]:
    """(whole GPUs, bytes per GPU of a share) for weights of `weights` bytes."""
    need = KV_FACTOR * weights + OVERHEAD_GIB * GiB
    if need <= SHARE_MAX_GIB * GiB:
        return 0, math.ceil(need / GiB) * GiB
    n = 1
    while n * gpu_bytes < need:
        n *= 2
    return n, 0


def catalogue(variants: int = 3) -> tuple[Model, ...]:
    """Every base model in `variants` copies (`-ft1`, `-ft2`, ... after the first)."""
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    out = []
    for name, gib in BASE_MODELS:
        size = round(gib * GiB)
        whole, share = sizing(size)
        for v in range(variants):
            out.append(Model(name if v == 0 else f"{name}-ft{v}", size, whole, share))
    return tuple(out)
