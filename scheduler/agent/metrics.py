"""Prometheus metrics of the node agent.

GPU figures use the DCGM exporter's names and labels (gpu, UUID, device,
pci_bus_id, modelName, Hostname), so dashboards and the autoscaler's queries work
on nodes without dcgm-exporter. Where dcgm-exporter also runs they are off
(--gpu-metrics=auto, see coexist.py; --gpu-metrics=never where the Node cannot
tell), or `sum()` over both would count each GPU twice.

    DCGM_FI_DEV_GPU_UTIL      gauge  GPU utilisation, percent
    DCGM_FI_DEV_FB_USED       gauge  frame buffer used, MiB (as nvidia-smi: driver reservation excluded)
    DCGM_FI_DEV_FB_FREE       gauge  frame buffer free, MiB
    DCGM_FI_DEV_FB_RESERVED   gauge  frame buffer the driver reserves, MiB (NVML v2 only)
    DCGM_FI_DEV_GPU_TEMP      gauge  degrees C
    gpusched_gpu_healthy{gpu,UUID,Hostname}          1 healthy, 0 not (lost, ECC, XID, row remap)
    gpusched_pod_gpu_utilization{namespace,pod,gpu,UUID,Hostname}
                                                     percent of the GPU's SM time the pod's processes
                                                     used since the last read (NVML process samples)
    gpusched_pod_gpu_memory_used_bytes{namespace,pod,gpu,UUID,Hostname}
                                                     GPU memory the pod's processes hold
    gpusched_model_cache_bytes{model,tier}           bytes of each complete cached model
    gpusched_agent_errors_total{kind}                nvml, gpu_lost, cache, publish, node_read, event, prefetch, pod_gpu
    gpusched_prefetch_bytes{model}                   bytes copied so far by the current/last prefetch
    gpusched_agent_node_writes_total{result}         Node patches, ok / error
    gpusched_agent_last_tick_timestamp_seconds       when the agent last finished a tick
A GPU that NVML no longer describes drops out of the DCGM series (no stale values)
and stays in gpusched_gpu_healthy as 0.

The gpusched_pod_gpu_* series (pod_gpu.py) exist for pods dcgm-exporter cannot name:
it labels only containers holding nvidia.com/gpu devices, so pods sharing a GPU through
gpusched get none. They are exported whatever --gpu-metrics says (no other exporter has
them) for every pod with a process on a GPU; `namespace`/`pod` name the workload pod, so
a scrape without honorLabels turns them into exported_namespace/exported_pod (the
autoscaler reads both). A pod with no process sample since the last read has no
utilisation series (unknown, not 0).
"""
from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scheduler.agent.cache import CacheScan
from scheduler.agent.nvml import GPUInfo
from scheduler.agent.pod_gpu import PodGpuUsage
from scheduler.ops_http import serve_ops

MiB = 2**20
ERROR_KINDS = ("nvml", "gpu_lost", "cache", "publish", "node_read", "event", "prefetch", "pod_gpu")
_GPU_LABELS = ["gpu", "UUID", "device", "pci_bus_id", "modelName", "Hostname"]
POD_GPU_UTIL = "gpusched_pod_gpu_utilization"  # autoscaler.signals.POD_GPU_UTIL_METRIC reads it
POD_GPU_MEMORY = "gpusched_pod_gpu_memory_used_bytes"
_POD_GPU_LABELS = ["namespace", "pod", "gpu", "UUID", "Hostname"]


def pod_gpu_families(usages: Iterable[PodGpuUsage], hostname: str) -> list[Metric]:
    """The per-pod GPU series (also what the test bed's fleet simulator serves as the agent)."""
    util = GaugeMetricFamily(POD_GPU_UTIL, "Percent of the GPU's SM time the pod's processes used (NVML).",
                             labels=_POD_GPU_LABELS)
    mem = GaugeMetricFamily(POD_GPU_MEMORY, "GPU memory the pod's processes hold, bytes (NVML).",
                            labels=_POD_GPU_LABELS)
    for u in usages:
        lv = [u.namespace, u.pod, str(u.gpu), u.uuid, hostname]
        if u.utilization is not None:
            util.add_metric(lv, u.utilization)
        if u.memory_used is not None:
            mem.add_metric(lv, u.memory_used)
    return [util, mem]


class _SnapshotCollector(Collector):
    """Yields gauges from the latest inventory and cache scan (swapped in whole by update)."""

    def __init__(self, hostname: str, gpu_metrics: bool):
        self.hostname = hostname
        self.gpu_metrics = gpu_metrics
        self._lock = threading.Lock()
        self._gpus: tuple[GPUInfo, ...] = ()
        self._models: tuple[tuple[str, str, int], ...] = ()
        self._pods: tuple[PodGpuUsage, ...] = ()

    def update(self, gpus: Iterable[GPUInfo], models: Iterable[tuple[str, str, int]],
               pods: Iterable[PodGpuUsage] = ()) -> None:
        with self._lock:
            self._gpus = tuple(gpus)
            self._models = tuple(models)
            self._pods = tuple(pods)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            gpus, models, pods = self._gpus, self._models, self._pods
        if self.gpu_metrics:
            util = GaugeMetricFamily("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", labels=_GPU_LABELS)
            used = GaugeMetricFamily("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", labels=_GPU_LABELS)
            free = GaugeMetricFamily("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", labels=_GPU_LABELS)
            reserved = GaugeMetricFamily("DCGM_FI_DEV_FB_RESERVED", "Framebuffer memory reserved (in MiB).",
                                         labels=_GPU_LABELS)
            temp = GaugeMetricFamily("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", labels=_GPU_LABELS)
            for g in gpus:
                if g.uuid is None or g.lost:
                    continue
                lv = [str(g.index), g.uuid, f"nvidia{g.index}", g.pci_bus_id or "", g.name or "", self.hostname]
                if g.utilization_gpu is not None:
                    util.add_metric(lv, g.utilization_gpu)
                if g.memory_used is not None:
                    used.add_metric(lv, g.memory_used // MiB)
                if g.memory_free is not None:
                    free.add_metric(lv, g.memory_free // MiB)
                if g.memory_reserved is not None:
                    reserved.add_metric(lv, g.memory_reserved // MiB)
                if g.temperature_c is not None:
                    temp.add_metric(lv, g.temperature_c)
            yield from (util, used, free, reserved, temp)
        healthy = GaugeMetricFamily("gpusched_gpu_healthy", "1 when the GPU is healthy, 0 when lost or failing.",
                                    labels=["gpu", "UUID", "Hostname"])
        for g in gpus:
            healthy.add_metric([str(g.index), g.uuid or "", self.hostname], 1.0 if g.healthy else 0.0)
        yield healthy
        yield from pod_gpu_families(pods, self.hostname)
        cache = GaugeMetricFamily("gpusched_model_cache_bytes", "Bytes of each complete model in the node's cache.",
                                  labels=["model", "tier"])
        for model, tier, size in models:
            cache.add_metric([model, tier], size)
        yield cache


class AgentMetrics:
    """The agent's metrics on their own registry (tests make as many as they like)."""

    def __init__(self, hostname: str = "", *, gpu_metrics: bool = True, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.snapshot = _SnapshotCollector(hostname, gpu_metrics)
        self.registry.register(self.snapshot)
        self.errors = Counter("gpusched_agent_errors", "Problems the agent met, by kind.", ["kind"],
                              registry=self.registry)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)
        self.prefetch_bytes = Gauge("gpusched_prefetch_bytes", "Bytes copied so far by a model prefetch.",
                                    ["model"], registry=self.registry)
        self.node_writes = Counter("gpusched_agent_node_writes", "Node patches by the agent.", ["result"],
                                   registry=self.registry)
        self.last_tick = Gauge("gpusched_agent_last_tick_timestamp_seconds", "When the agent last finished a tick.",
                               registry=self.registry)

    def update(self, gpus: Iterable[GPUInfo], scan: CacheScan | None, pods: Iterable[PodGpuUsage] = ()) -> None:
        models = tuple((m.model, m.tier, m.bytes) for m in scan.models) if scan is not None else ()
        self.snapshot.update(gpus, models, pods)

    def set_gpu_metrics(self, on: bool) -> None:
        """Export the DCGM_FI_* series or not (coexist.exports_gpu_metrics decides)."""
        self.snapshot.gpu_metrics = on

    def error(self, kind: str, n: int = 1) -> None:
        if n > 0:
            self.errors.labels(kind).inc(n)

    def serve(self, port: int, addr: str = "0.0.0.0",
              health: Callable[[], tuple[bool, str]] | None = None) -> ThreadingHTTPServer:
        """/metrics, and /healthz answering 200 or 503 from `health` (always 200 without
        one), on a daemon thread. Returns the server (port 0 picks a free port)."""
        return serve_ops(self.registry, port, addr, health=health, thread_name="agent-http")
