"""Where per-pod GPU use comes from on a node: /proc for each GPU process's cgroup and the
API server for the names of the pods on this node (the adapter around pod_gpu.py).

Needs the host's PIDs: NVML names host PIDs. The chart mounts the host's /proc read-only
and gives it as --proc-root (hostPID would do too, with signals and ptrace besides). Needs `list pods` in the agent's RBAC; the
list is filtered to this node and taken only when a process names a pod UID not seen
before, at most once per `relist_s` (pod UIDs never change meaning, so names are kept).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Iterable

from scheduler.agent.nvml import GPUInfo
from scheduler.agent.pod_gpu import PodGpuUsage, PodRef, pod_gpu_usage, pod_uid_from_cgroup, pids_of

log = logging.getLogger(__name__)

MAX_CGROUP_BYTES = 64 * 1024  # a cgroup file is a few lines; a bigger one is not read whole


def read_cgroups(pids: Iterable[int], proc_root: str = "/proc") -> dict[int, str]:
    """pid -> /proc/<pid>/cgroup text, for the pids that still exist and can be read."""
    out: dict[int, str] = {}
    for pid in pids:
        if pid <= 0:
            continue
        try:
            with open(os.path.join(proc_root, str(pid), "cgroup"), encoding="utf-8", errors="replace") as f:
                out[pid] = f.read(MAX_CGROUP_BYTES)
        except OSError:  # ended since NVML listed it, or not visible without hostPID
            continue
    return out


class PodGpuSource:
    def __init__(self, core_v1: Any, node_name: str, *, proc_root: str = "/proc", relist_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, timeout: float = 10.0):
        self.api, self.node_name, self.proc_root = core_v1, node_name, proc_root
        self.relist_s, self.clock, self.timeout = relist_s, clock, timeout
        self.pods: dict[str, PodRef] = {}
        self._listed_at = float("-inf")
        self._warned = False

    def read(self, gpus: Iterable[GPUInfo]) -> tuple[PodGpuUsage, ...]:
        gpus = tuple(gpus)
        cgroups = read_cgroups(pids_of(gpus), self.proc_root)
        uids = {u for u in (pod_uid_from_cgroup(t) for t in cgroups.values()) if u}
        if uids - set(self.pods) and self.clock() - self._listed_at >= self.relist_s:
            self._list_pods(uids)
        return pod_gpu_usage(gpus, cgroups, self.pods)

    def _list_pods(self, wanted: set[str]) -> None:
        self._listed_at = self.clock()
        try:
            items = self.api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node_name}",
                                                         resource_version="0", _request_timeout=self.timeout).items
        except Exception as exc:  # noqa: BLE001 - no names this time; the series wait, the agent goes on
            if not self._warned:
                log.warning("cannot list this node's pods (per-pod GPU metrics wait): %s", str(exc)[:200])
                self._warned = True
            return
        self._warned = False
        current = {str(p.metadata.uid): PodRef(p.metadata.namespace or "", p.metadata.name or "")
                   for p in items if p.metadata is not None and p.metadata.uid}
        # pods gone from the node are dropped, so the map stays the size of the node's pods
        self.pods = current
