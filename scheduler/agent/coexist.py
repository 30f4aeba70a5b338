"""What the agent leaves to NVIDIA's own node software where it runs (pure decisions).

- GPU feature discovery (GFD, run by the GPU Operator or alone) writes
  nvidia.com/gpu.{product,memory,count}. Two writers of one label fight, and GFD's
  values differ on purpose: with time-slicing or MPS it appends `-SHARED` to the
  product (and the count is the replica count), and it names MIG products its own
  way. Where GFD runs, the agent writes none of them. GFD is recognised by labels
  only it writes (the agent never writes these).
- dcgm-exporter (the GPU Operator installs it by default) exports the DCGM_FI_* series
  the agent can also export: both together count every GPU twice. The GPU Operator
  schedules its exporter on nodes labelled nvidia.com/gpu.deploy.dcgm-exporter=true.
  A dcgm-exporter installed without the operator is not visible from the Node: set
  the mode to "never" there.

Modes: "auto" (decide from the Node's labels), "always", "never".
"""
from __future__ import annotations

from typing import Mapping

MODES = ("auto", "always", "never")
# labels GFD writes and the agent never does (gfd.timestamp is absent with GFD's --no-timestamp)
GFD_LABELS = ("nvidia.com/gfd.timestamp", "nvidia.com/cuda.driver.major", "nvidia.com/gpu.compute.major",
              "nvidia.com/gpu.family", "nvidia.com/gpu.machine")
DCGM_EXPORTER_LABEL = "nvidia.com/gpu.deploy.dcgm-exporter"


def _check(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")


def writes_gpu_labels(mode: str, node_labels: Mapping[str, str] | None) -> tuple[bool, str]:
    """Whether the agent writes nvidia.com/gpu.{product,memory,count}. `node_labels` None:
    not read (yet); then "auto" writes nothing, rather than overwrite GFD once."""
    _check(mode)
    if mode != "auto":
        return mode == "always", f"--gpu-labels={mode}"
    if node_labels is None:
        return False, "the Node's labels are not read yet; GPU labels wait until they are"
    gfd = next((k for k in GFD_LABELS if k in node_labels), None)
    if gfd is not None:
        return False, f"GPU feature discovery labels this node ({gfd}): its nvidia.com/gpu.* labels are left to it"
    return True, "GPU feature discovery does not label this node"


def exports_gpu_metrics(mode: str, node_labels: Mapping[str, str] | None) -> tuple[bool, str]:
    """Whether the agent exports DCGM_FI_*. `node_labels` None: not read (yet); then "auto"
    exports (a gap in GPU metrics is worse than a short overlap)."""
    _check(mode)
    if mode != "auto":
        return mode == "always", f"--gpu-metrics={mode}"
    if node_labels is not None and node_labels.get(DCGM_EXPORTER_LABEL) == "true":
        return False, f"the GPU Operator's dcgm-exporter runs here ({DCGM_EXPORTER_LABEL}=true)"
    return True, "no dcgm-exporter known on this node"
