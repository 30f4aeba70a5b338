"""Names that are part of the product's contract (docs/design.md, "The contract"). Change them only on purpose."""
from typing import Final

DOMAIN: Final = "gpusched.io"
SCHEDULER_NAME: Final = "gpusched"

# Pod side, set by users
MODEL: Final = f"{DOMAIN}/model"
MODEL_BYTES: Final = f"{DOMAIN}/model-bytes"
GPU_MEMORY: Final = f"{DOMAIN}/gpu-memory"
GPU_PRODUCTS: Final = f"{DOMAIN}/gpu-products"  # comma-separated acceptable nvidia.com/gpu.product values
# Pod side, written by the extender at bind
GPU_IDS: Final = f"{DOMAIN}/gpu-ids"
PLACEMENT: Final = f"{DOMAIN}/placement"
# Readiness gate that holds warm replicas out of traffic
SERVING_GATE: Final = f"{DOMAIN}/serving"
# Test bed: kwok reads this delay before marking a pod Ready (models a cold start)
READY_DELAY: Final = f"{DOMAIN}/ready-delay"

# Node side, written by the node agent (the test bed writes them for kwok nodes)
GPUS: Final = f"{DOMAIN}/gpus"
MODEL_CACHE: Final = f"{DOMAIN}/model-cache"
REPORTED_AT: Final = f"{DOMAIN}/reported-at"
PREFETCH: Final = f"{DOMAIN}/prefetch"

# NVIDIA's names (device plugin and GPU feature discovery)
GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL: Final = "nvidia.com/gpu.memory"  # MiB
GPU_COUNT_LABEL: Final = "nvidia.com/gpu.count"

CACHE_TIERS: Final = ("gpu", "host-memory", "disk")

# Dynamic Resource Allocation (docs/ownership.md): the agent's kubelet plugin and ResourceSlices,
# the chart's DeviceClass (deploy/chart/gpusched/templates/dra.yaml) and CDI specs use these
DRA_DRIVER: Final = f"gpu.{DOMAIN}"  # driver name, DeviceClass name, CDI vendor
DRA_MEMORY: Final = "memory"  # the consumable capacity of each GPU device, in bytes
CDI_KIND: Final = f"{DRA_DRIVER}/claim"  # one CDI device per prepared ResourceClaim
