"""Per-pod GPU use from NVML's per-process accounting (pure: data in, usage out).

dcgm-exporter labels a GPU's series with the pod only for containers that hold
`nvidia.com/gpu` devices (the kubelet PodResources API); a pod that shares a GPU through
gpusched (`gpusched.io/gpu-memory` alone) holds no device and gets no pod label there.
NVML still knows which processes run on each GPU, their memory
(nvmlDeviceGetComputeRunningProcesses) and their SM share (nvmlDeviceGetProcessUtilization);
a process's cgroup names its pod's UID, and the agent's pod list names the pod.

kubelet names a pod's cgroup after its UID:
- systemd driver: `.../kubepods-burstable-pod<uid>.slice/...` (`kubepods-pod<uid>.slice`
  for Guaranteed pods), with the UID's dashes written as underscores;
- cgroupfs driver: `.../kubepods/burstable/pod<uid>/...` (`/kubepods/pod<uid>/` for
  Guaranteed pods).
Seen from the agent's own cgroup namespace the path may start with `/..`: the pod part
is searched for anywhere in the path. A process outside any pod (the host, a system
daemon) maps to no pod and is left out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from scheduler.agent.nvml import GPUInfo

_UID = r"[0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12}"
_SYSTEMD = re.compile(rf"kubepods(?:-[a-z]+)?-pod({_UID})\.slice")
_CGROUPFS = re.compile(rf"/kubepods(?:/[a-z]+)?/pod({_UID})(?:/|$)")


def pod_uid_from_cgroup(text: str) -> str | None:
    """The pod UID (with dashes) in a /proc/<pid>/cgroup text, or None outside a pod.
    v1 lists one line per hierarchy, v2 one `0::` line: all name the same pod."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        m = _SYSTEMD.search(path) or _CGROUPFS.search(path)
        if m:
            return m.group(1).replace("_", "-").lower()
    return None


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class PodGpuUsage:
    """One pod's use of one GPU: its processes' memory and SM share summed."""

    namespace: str
    pod: str
    gpu: int  # NVML index
    uuid: str
    memory_used: int | None  # bytes; None where NVML told no process's memory
    utilization: float | None  # percent of the GPU's SM time; None without a sample


def pod_gpu_usage(gpus: Iterable[GPUInfo], cgroups: Mapping[int, str],
                  pods: Mapping[str, PodRef]) -> tuple[PodGpuUsage, ...]:
    """Usage per (pod, GPU) from the processes NVML lists on each GPU.

    ``cgroups``: pid -> /proc/<pid>/cgroup text (missing: the process has ended or is not
    visible); ``pods``: pod UID -> namespace/name of the pods on this node. A process
    whose pod is not (yet) in ``pods`` is left out rather than named wrongly. A pod's SM
    share is the sum of its processes', capped at 100 (NVML samples overlap a little)."""
    mem: dict[tuple[PodRef, int], int | None] = {}
    util: dict[tuple[PodRef, int], float] = {}
    uuids: dict[int, str] = {}
    order: list[tuple[PodRef, int]] = []
    for g in gpus:
        if g.lost or g.uuid is None:
            continue
        uuids[g.index] = g.uuid
        samples = dict(g.process_utilization or ())
        pids = {p.pid: p.used_memory for p in g.processes or ()}
        for pid in list(pids) + [p for p in samples if p not in pids]:
            uid = pod_uid_from_cgroup(cgroups.get(pid, ""))
            ref = pods.get(uid) if uid else None
            if ref is None:
                continue
            key = (ref, g.index)
            if key not in mem:
                order.append(key)
                mem[key] = None
            used = pids.get(pid)
            if used is not None:
                mem[key] = (mem[key] or 0) + used
            if pid in samples:
                util[key] = util.get(key, 0.0) + samples[pid]
    return tuple(PodGpuUsage(ref.namespace, ref.name, index, uuids[index], mem[(ref, index)],
                             min(100.0, util[(ref, index)]) if (ref, index) in util else None)
                 for ref, index in order)


def pids_of(gpus: Iterable[GPUInfo]) -> set[int]:
    """Every pid NVML names on a GPU this read: whose cgroups to read."""
    out: set[int] = set()
    for g in gpus:
        out.update(p.pid for p in g.processes or ())
        out.update(pid for pid, _ in g.process_utilization or ())
    return out
