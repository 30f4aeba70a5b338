"""The agent's loop. One tick: read the GPUs, collect finished prefetches, scan the
cache, build the node report, update metrics, write the Node if `should_publish`
says so, and queue prefetches the Node asks for.

Nothing in a tick raises: every failure is logged, counted in
gpusched_agent_errors_total{kind} and, where someone should look at the node,
recorded as an Event on it. Without NVML the agent runs in no-GPU mode (the
cache is still published) and tries NVML again every `nvml_retry_s` (the GPU
operator may install the driver after the agent started).

A GPU that stops answering (NVMLError_GpuIsLost, count dropped, NVML gone) stays
in the report as unhealthy, with its last known memory size shown as fully used,
so the extender stops placing on it rather than forgetting it exists.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable

from scheduler import contract, nodeinfo
from scheduler.agent import cache as cache_mod
from scheduler.agent import prefetch as prefetch_mod
from scheduler.agent.coexist import exports_gpu_metrics, writes_gpu_labels
from scheduler.agent.health import DEFAULT_STALE_AFTER_S, liveness
from scheduler.agent.metrics import AgentMetrics
from scheduler.agent.nvml import GPUInfo, GPUReader, Inventory, NVMLUnavailable
from scheduler.agent.pod_source import PodGpuSource
from scheduler.agent.quota import CachedUse, plan_eviction
from scheduler.agent.publish import (DEFAULT_HEARTBEAT_S, DEFAULT_MEM_THRESHOLD, DEFAULT_MIN_INTERVAL_S,
                                     NodePublisher, gpu_labels, label_value,
                                     should_publish)
from scheduler.quantity import format_bytes

log = logging.getLogger(__name__)
MiB = 2**20


@dataclass
class AgentConfig:
    node_name: str = ""
    cache_dirs: tuple[str, ...] = ()
    interval_s: float = 10.0
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    mem_threshold_bytes: int = DEFAULT_MEM_THRESHOLD
    require_gpus: bool = False
    loaded_models: tuple[str, ...] = ()
    measure_residency: bool = True
    host_memory_fraction: float = 0.9
    model_stores: tuple[str, ...] = ()
    prefetch_dir: str | None = None  # default: the first cache dir
    cache_quota_bytes: int | None = None  # LRU-evict from the prefetch dir's hub/ to stay within; None: no quota
    nvml_retry_s: float = 300.0
    prefetch_retry_s: float = 60.0  # first retry after a failed prefetch; doubles up to an hour
    prefetch_poll_s: float = 30.0  # read the Node's gpusched.io/prefetch at most this often
    stale_after_s: float = DEFAULT_STALE_AFTER_S  # /healthz fails when no tick finished for this long
    gpu_labels: str = "auto"  # coexist.MODES: write nvidia.com/gpu.* labels (auto: not where GFD runs)
    gpu_metrics: str = "auto"  # coexist.MODES: export DCGM_FI_* (auto: not where dcgm-exporter runs)
    node_labels_s: float = 300.0  # re-read the Node's labels for the "auto" decisions this often


@dataclass(frozen=True)
class TickResult:
    inventory: Inventory
    gpus: tuple[GPUInfo, ...]  # what the agent believes, last-known GPUs included
    scan: cache_mod.CacheScan
    report: nodeinfo.NodeReport
    labels: dict[str, str]
    published: bool = False
    reason: str = ""

    def to_dict(self, node_name: str = "") -> dict[str, Any]:
        return {
            "node": node_name,
            "nvml": {
                "available": self.inventory.available,
                "driver_version": self.inventory.driver_version,
                "errors": list(self.inventory.errors),
                "gpus": [_gpu_dict(g) for g in self.gpus],
            },
            "cache": self.scan.to_dict(),
            "annotations": nodeinfo.annotations_for(self.report),
            "labels": self.labels,
            "published": self.published,
            "reason": self.reason,
        }


def _gpu_dict(g: GPUInfo) -> dict[str, Any]:
    d = {k: getattr(g, k) for k in g.__dataclass_fields__}
    d["processes"] = None if g.processes is None else [{"pid": p.pid, "used_memory": p.used_memory}
                                                        for p in g.processes]
    for k in ("xids", "health_reasons", "errors"):
        d[k] = list(d[k])
    return d


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _PrefetchState:
    failures: dict[str, int] = field(default_factory=dict)
    retry_at: dict[str, float] = field(default_factory=dict)
    progress: dict[str, tuple[int, int]] = field(default_factory=dict)
    progress_bucket: dict[str, int] = field(default_factory=dict)
    used_at: dict[str, float] = field(default_factory=dict)  # model -> epoch s last seen loaded or in page cache
    protected: frozenset[str] = frozenset()  # never evicted: loaded, requested, used by a pod on this node
    pods_known: bool = False  # whether `protected` includes this node's pods (else no eviction)
    evicted: list[str] = field(default_factory=list)  # Event messages for the next tick


class Agent:
    def __init__(self, config: AgentConfig, *, nvml: Any = None, publisher: NodePublisher | None = None,
                 metrics: AgentMetrics | None = None, prefetcher: prefetch_mod.Prefetcher | None = None,
                 pod_gpu: PodGpuSource | None = None, dra: Any = None, clock: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] = _utcnow):
        self.config = config
        self.nvml = nvml
        self.publisher = publisher
        self.metrics = metrics if metrics is not None else AgentMetrics(config.node_name)
        self.prefetcher = prefetcher
        self.pod_gpu = pod_gpu
        self.dra = dra  # dra.node.DraNode: the kubelet plugin and this node's ResourceSlice
        self.clock = clock
        self.wall = wall
        self.reader: GPUReader | None = None
        self.no_gpu_reason: str | None = None
        self.known: dict[int, GPUInfo] = {}  # last GPUInfo with memory figures, by index
        self.last_published: nodeinfo.NodeReport | None = None
        self.last_time = 0.0
        self._health: dict[int, bool] = {}
        self._problems: set[str] = set()
        self._incomplete: set[str] = set()
        self._prefetch_problems: set[str] = set()
        self._last_scan = cache_mod.CacheScan()
        self._publish_failures = 0
        self._publish_retry_at = float("-inf")
        self._nvml_retry_at = float("inf")
        self._worker: prefetch_mod.PrefetchWorker | None = None
        self._pf = _PrefetchState()
        self._next_poll = float("-inf")
        self._pf_lock = threading.Lock()
        self.started_at = clock()
        self.node_labels: dict[str, str] | None = None  # the Node's labels, last read
        self._node_labels_at = float("-inf")
        self._coexist: dict[str, str] = {}  # decision -> its last reason, to log changes once
        self.last_tick_at: float | None = None  # when the last tick finished (clock), for /healthz

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Open NVML (NVMLUnavailable propagates only with require_gpus) and the prefetcher."""
        self._open_nvml(first=True)
        if self.dra is not None:
            self.dra.start()
        if self.prefetcher is not None:
            removed = prefetch_mod.cleanup_temp(self.prefetcher.cache_dir)
            if removed:
                log.info("removed %d leftover prefetch directories from %s", len(removed), self.prefetcher.cache_dir)
            if self.config.cache_quota_bytes is not None:
                self.prefetcher.make_room = self._make_room
            self._worker = prefetch_mod.PrefetchWorker(self.prefetcher, self._on_progress)

    def close(self) -> None:
        if self.dra is not None:
            self.dra.stop()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self.reader is not None:
            self.reader.close()

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.is_set():
                began = self.clock()
                self.tick()
                stop.wait(max(0.0, self.config.interval_s - (self.clock() - began)))
        finally:
            self.close()

    def _open_nvml(self, first: bool = False) -> None:
        reader = GPUReader(self.nvml)
        try:
            reader.open()
        except NVMLUnavailable as exc:
            if first and self.config.require_gpus:
                raise
            if first or str(exc) != self.no_gpu_reason:
                log.warning("no GPU: %s; running in no-GPU mode (model cache still published)", exc)
            self.no_gpu_reason = str(exc)
            self._nvml_retry_at = self.clock() + self.config.nvml_retry_s
            return
        if not first:
            log.info("NVML is available now; leaving no-GPU mode")
        self.reader = reader
        self.no_gpu_reason = None

    # --- one tick ---------------------------------------------------------------------

    def tick(self, force_publish: bool = False) -> TickResult:
        inventory = self._step("nvml", self._read_gpus, Inventory(available=False, errors=("read failed",)))
        gpus = self._step("nvml", lambda: self._effective_gpus(inventory), ())
        self._step("prefetch", self._collect_prefetches, None)
        if self.dra is not None:
            self._step("dra", lambda: self.dra.update(gpus), None)
        scan = self._step("cache", self._scan, None)
        if scan is None:  # a bug, not an empty cache: keep reporting what was there
            scan = self._last_scan
        self._last_scan = scan
        report = nodeinfo.NodeReport(gpus=self._report_gpus(gpus), models=scan.cached_models(),
                                     reported_at=self.wall())
        self._step("node_read", self._read_node_labels, None)
        labels = self._labels(gpus)
        write, why = writes_gpu_labels(self.config.gpu_labels, self.node_labels if self.publisher else {})
        self._note("gpu labels", write, why)
        if not write:
            labels = {}
        export, why = exports_gpu_metrics(self.config.gpu_metrics, self.node_labels)
        self._note("DCGM_FI_* metrics", export, why)
        self.metrics.set_gpu_metrics(export)
        self._step("event", lambda: self._health_events(gpus), None)
        self._step("event", lambda: self._cache_events(scan), None)
        source = self.pod_gpu
        pods = self._step("pod_gpu", lambda: source.read(gpus), ()) if source is not None else ()
        self.metrics.update(gpus, scan, pods)
        published, reason = self._step("publish", lambda: self._publish(report, labels, force_publish),
                                       (False, "publish failed"))
        self._step("prefetch", lambda: self._request_prefetches(scan), None)
        self.metrics.last_tick.set(time.time())
        self.last_tick_at = self.clock()
        return TickResult(inventory, gpus, scan, report, labels, published, reason)

    def _read_node_labels(self) -> None:
        """The Node's labels, for the "auto" modes; read every node_labels_s (one read from
        the watch cache), retried on the next tick after a failure."""
        auto = "auto" in (self.config.gpu_labels, self.config.gpu_metrics)
        now = self.clock()
        if self.publisher is None or not auto or now < self._node_labels_at + self.config.node_labels_s:
            return
        meta = self.publisher.node_metadata()
        if meta is None:
            self.metrics.error("node_read")
            return
        self.node_labels, self._node_labels_at = meta[0], now

    def _note(self, what: str, on: bool, why: str) -> None:
        text = f"{what} {'on' if on else 'off'}: {why}"
        if self._coexist.get(what) != text:
            self._coexist[what] = text
            log.info("%s", text)

    def healthy(self) -> tuple[bool, str]:
        """For /healthz: alive while ticks keep finishing (health.liveness)."""
        return liveness(self.started_at, self.last_tick_at, self.clock(), self.config.stale_after_s)

    def _step(self, kind: str, fn: Callable[[], Any], fallback: Any) -> Any:
        try:
            return fn()
        except Exception:  # noqa: BLE001 - a bug in one step must not stop the agent
            log.exception("agent step failed (%s)", kind)
            self.metrics.error(kind)
            return fallback

    def _read_gpus(self) -> Inventory:
        if self.reader is None:
            if self.clock() >= self._nvml_retry_at:
                self._open_nvml()
            if self.reader is None:
                return Inventory(available=False, errors=(f"no GPU: {self.no_gpu_reason}",))
        inv = self.reader.read()
        field_errors = sum(len(g.errors) for g in inv.gpus if not g.lost) + len(inv.errors)
        if field_errors:
            self.metrics.error("nvml", field_errors)
            log.debug("NVML errors: %s", [e for g in inv.gpus for e in g.errors] + list(inv.errors))
        if not inv.available:
            log.warning("NVML read failed: %s", "; ".join(inv.errors))
        return inv

    def _effective_gpus(self, inv: Inventory) -> tuple[GPUInfo, ...]:
        if not inv.available:
            reason = inv.errors[0] if inv.errors else "NVML unavailable"
            return tuple(replace(g, lost=True, healthy=False, health_reasons=(reason,), processes=None)
                         for _, g in sorted(self.known.items()))
        out = []
        for g in inv.gpus:
            if g.memory_total is not None and g.uuid is not None and not g.lost:
                self.known[g.index] = g
            k = self.known.get(g.index)
            if g.uuid is None and k is not None:  # lost before it said who it is: keep its identity
                g = replace(g, uuid=k.uuid, name=g.name or k.name, pci_bus_id=g.pci_bus_id or k.pci_bus_id)
            out.append(g)
        seen = {g.index for g in inv.gpus}
        for i, g in sorted(self.known.items()):
            if i not in seen:
                out.append(replace(g, lost=True, healthy=False, processes=None,
                                   health_reasons=("no longer enumerated by NVML",)))
        return tuple(sorted(out, key=lambda g: g.index))

    def _report_gpus(self, gpus: tuple[GPUInfo, ...]) -> tuple[nodeinfo.GPU, ...]:
        out = []
        for g in gpus:
            ref = g if g.memory_total is not None else self.known.get(g.index)
            usable = ref.memory_usable if ref is not None else None
            if not usable:
                total = used = MiB  # never measured: the smallest size the codec allows, all used
            else:
                total = usable
                used = g.memory_used if g.memory_used is not None else total  # unknown is not zero
            out.append(nodeinfo.GPU(
                index=g.index,
                uuid=g.uuid or (ref.uuid if ref is not None and ref.uuid else ""),
                memory_total=total,
                memory_used=min(max(used, 0), total),
                utilization=g.utilization_gpu or 0.0,
                healthy=g.healthy,
                # the nvidia.com/gpu.product label's spelling, which gpusched.io/gpu-products matches
                product=label_value(g.name or (ref.name if ref is not None and ref.name else "")),
            ))
        return tuple(out)

    def _labels(self, gpus: tuple[GPUInfo, ...]) -> dict[str, str]:
        if not gpus:
            return {}
        first = next((g for g in gpus if g.memory_total is not None), None) or self.known.get(gpus[0].index)
        return gpu_labels(first.name if first else None,
                          first.memory_total // MiB if first and first.memory_total else None, len(gpus))

    def _scan(self) -> cache_mod.CacheScan:
        return cache_mod.scan_cache(self.config.cache_dirs, loaded=self.config.loaded_models,
                                    measure_residency=self.config.measure_residency,
                                    host_memory_fraction=self.config.host_memory_fraction)

    # --- events -----------------------------------------------------------------------

    def _event(self, reason: str, message: str, type_: str = "Warning") -> None:
        if self.publisher is not None and not self.publisher.event(reason, message, type_):
            if self.publisher.last_error:
                self.metrics.error("event")

    def _health_events(self, gpus: tuple[GPUInfo, ...]) -> None:
        for g in gpus:
            was = self._health.get(g.index)
            self._health[g.index] = g.healthy
            if g.healthy and was is False:
                log.info("GPU %d (%s) is healthy again", g.index, g.uuid)
                self._event("GPUHealthy", f"GPU {g.index} ({g.uuid}) is healthy again", "Normal")
            elif not g.healthy and was is not False:
                why = "; ".join(g.health_reasons) or "unhealthy"
                log.warning("GPU %d (%s) unhealthy: %s", g.index, g.uuid or "?", why)
                if g.lost:
                    self.metrics.error("gpu_lost")
                self._event("GPULost" if g.lost else "GPUUnhealthy", f"GPU {g.index} ({g.uuid or '?'}): {why}")

    def _cache_events(self, scan: cache_mod.CacheScan) -> None:
        problems = set(scan.problems)
        new = sorted(problems - self._problems)
        self._problems = problems
        for p in new:
            log.warning("model cache: %s", p)
        if new:
            self.metrics.error("cache", len(new))
            more = f" (+{len(new) - 5} more)" if len(new) > 5 else ""
            self._event("ModelCacheProblem", "; ".join(new[:5]) + more)
        incomplete = set(scan.incomplete)
        for p in sorted(incomplete - self._incomplete):
            log.info("model cache: not counted: %s", p)
        self._incomplete = incomplete

    # --- publishing -------------------------------------------------------------------

    def _publish(self, report: nodeinfo.NodeReport, labels: dict[str, str], force: bool) -> tuple[bool, str]:
        if self.publisher is None:
            return False, "publishing disabled"
        now = self.clock()
        if not force and now < self._publish_retry_at:
            return False, f"retrying in {self._publish_retry_at - now:.0f}s after an API error"
        ok, reason = should_publish(self.last_published, report, self.last_time, now, self.config.min_interval_s,
                                    self.config.heartbeat_s, self.config.mem_threshold_bytes)
        if not ok and not force:
            return False, reason
        if self.publisher.publish(report, labels):
            self.metrics.node_writes.labels("ok").inc()
            self.last_published, self.last_time = report, now
            self._publish_failures = 0
            self._publish_retry_at = float("-inf")
            (log.debug if reason.startswith("heartbeat") else log.info)("Node %s updated: %s",
                                                                        self.config.node_name, reason)
            return True, reason
        self.metrics.node_writes.labels("error").inc()
        self.metrics.error("publish")
        self._publish_failures += 1
        backoff = min(self.config.interval_s * 2 ** (self._publish_failures - 1), self.config.heartbeat_s)
        self._publish_retry_at = now + backoff
        return False, f"API error: {self.publisher.last_error}"

    # --- prefetch ---------------------------------------------------------------------

    def _on_progress(self, model: str, done: int, total: int) -> None:  # runs on the worker thread
        self.metrics.prefetch_bytes.labels(model).set(done)
        with self._pf_lock:
            self._pf.progress[model] = (done, total)

    def _collect_prefetches(self) -> None:
        if self._worker is None:
            return
        with self._pf_lock:
            progress = dict(self._pf.progress)
        for model, (done, total) in progress.items():
            bucket = min(3, int(4 * done / total)) if total else 0
            if bucket > self._pf.progress_bucket.get(model, 0):
                self._pf.progress_bucket[model] = bucket
                self._event("PrefetchProgress", f"{model}: {25 * bucket}% ({format_bytes(done)} of "
                                                f"{format_bytes(total)})", "Normal")
        with self._pf_lock:
            evicted, self._pf.evicted = self._pf.evicted, []
        for msg in evicted:
            log.info("evicted %s", msg)
            self._event("ModelEvicted", msg, "Normal")
        for req, result, error in self._worker.drain():
            with self._pf_lock:
                self._pf.progress.pop(req.model, None)
            self._pf.progress_bucket.pop(req.model, None)
            if result is not None:
                self._pf.failures.pop(req.model, None)
                self._pf.retry_at.pop(req.model, None)
                rate = result.bytes / result.seconds if result.seconds > 0 else 0
                msg = (f"{result.model}: {format_bytes(result.bytes)} in {result.files} files from {result.source} "
                       f"in {result.seconds:.1f}s ({format_bytes(rate)}/s)")
                log.info("prefetched %s", msg)
                self._event("Prefetched", msg, "Normal")
            else:
                n = self._pf.failures.get(req.model, 0) + 1
                self._pf.failures[req.model] = n
                delay = min(3600.0, self.config.prefetch_retry_s * 2 ** (n - 1))
                self._pf.retry_at[req.model] = self.clock() + delay
                log.warning("prefetch of %s failed (retry in %.0fs): %s", req.model, delay, error)
                self.metrics.error("prefetch")
                self._event("PrefetchFailed", f"{req.model}: {error} (retry in {delay:.0f}s)")

    def _request_prefetches(self, scan: cache_mod.CacheScan) -> None:
        if self._worker is None or self.publisher is None:
            return
        now = self.clock()
        if now < self._next_poll:
            return
        self._next_poll = now + self.config.prefetch_poll_s
        annotations = self.publisher.node_annotations()
        if annotations is None:
            self.metrics.error("node_read")
            return
        requests, problems = prefetch_mod.parse_requests(annotations.get(contract.PREFETCH))
        new = sorted(set(problems) - self._prefetch_problems)
        self._prefetch_problems = set(problems)
        if new:
            for p in new:
                log.warning("%s", p)
            self.metrics.error("prefetch", len(new))
            self._event("PrefetchRejected", "; ".join(new[:5]))
        cached = {m.model for m in scan.models}
        # pruned only once gpusched.io/model-cache shows the model: until then the
        # autoscaler's prewarmer, seeing neither, would ask again
        published = {m.model for m in self.last_published.models} if self.last_published is not None else set()
        self._prune_requests(annotations.get(contract.PREFETCH), cached & published)
        if self.config.cache_quota_bytes is not None:
            self._note_use(scan, {r.model for r in requests})
        pending = self._worker.pending()
        for req in requests:
            if req.model in cached or req.model in pending or now < self._pf.retry_at.get(req.model, float("-inf")):
                continue
            if self._worker.submit(req):
                self._event("PrefetchStarted", f"{req.model} from {req.source or 'the default model store'}",
                            "Normal")

    def _prune_requests(self, text: str | None, cached: set[str]) -> None:
        """Drop the cached models from gpusched.io/prefetch. A JSON patch whose `test`
        op fails when someone rewrote the annotation since it was read, so a request
        added meanwhile is never lost; the next poll tries again."""
        pruned = prefetch_mod.prune_requests(text, cached)
        if pruned is None or self.publisher is None:
            return
        path = "/metadata/annotations/" + contract.PREFETCH.replace("~", "~0").replace("/", "~1")
        ops: list[dict[str, Any]] = [{"op": "test", "path": path, "value": text}]
        ops.append({"op": "remove", "path": path} if pruned == "[]" else
                   {"op": "replace", "path": path, "value": pruned})
        try:
            self.publisher.api.patch_node(self.config.node_name, ops, _content_type="application/json-patch+json",
                                          _request_timeout=self.publisher.timeout)
        except Exception as exc:  # noqa: BLE001 - ApiException (422: changed meanwhile), urllib3 errors
            log.info("pruning %s on Node %s failed (retried next poll): %s", contract.PREFETCH,
                     self.config.node_name, str(exc).splitlines()[0][:200])

    def _note_use(self, scan: cache_mod.CacheScan, requested: set[str]) -> None:
        """What the quota must not evict, and when models were last seen in use."""
        now = self.wall().timestamp()
        used_at = dict(self._pf.used_at)
        for m in scan.models:
            if m.tier != "disk":
                used_at[m.model] = now
        pods = self._pod_models()
        protected = set(self.config.loaded_models) | requested | (pods or set())
        protected |= {m.model for m in scan.models if m.tier == "gpu"}
        with self._pf_lock:
            self._pf.used_at = used_at
            self._pf.protected = frozenset(protected)
            self._pf.pods_known = pods is not None

    def _pod_models(self) -> set[str] | None:
        """The gpusched.io/model of the pods on this node that have not finished; None
        when they cannot be listed (RBAC: pods list, granted by the chart with
        agent.cacheQuota), and then nothing is evicted."""
        if self.publisher is None:
            return None
        try:
            pods = self.publisher.api.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.config.node_name}", resource_version="0",
                _request_timeout=self.publisher.timeout)
        except Exception as exc:  # noqa: BLE001
            log.warning("listing pods on %s failed; no cache eviction until it works: %s", self.config.node_name,
                        str(exc).splitlines()[0][:200])
            return None
        models = set()
        for pod in getattr(pods, "items", None) or []:
            if getattr(getattr(pod, "status", None), "phase", None) in ("Succeeded", "Failed"):
                continue
            meta = getattr(pod, "metadata", None)
            for where in (getattr(meta, "annotations", None) or {}, getattr(meta, "labels", None) or {}):
                model = where.get(contract.MODEL)
                if isinstance(model, str) and model:
                    models.add(model)
        return models

    def _make_room(self, model: str, incoming: int) -> None:  # runs on the prefetch worker's thread
        """Evict least recently used models from the prefetch dir's hub/ until `incoming`
        bytes fit the quota; raise PrefetchError (the prefetch fails with the reason)
        when they cannot."""
        assert self.prefetcher is not None and self.config.cache_quota_bytes is not None
        with self._pf_lock:
            used_at, protected, pods_known = dict(self._pf.used_at), self._pf.protected, self._pf.pods_known
        hub = self.prefetcher.hub_dir
        scan = cache_mod.scan_cache([self.prefetcher.cache_dir], measure_residency=False)
        mine = [m for m in scan.models if m.layout == "hf" and m.path.startswith(hub + "/")]
        uses = [CachedUse(m.model, m.bytes, max(used_at.get(m.model, 0.0),
                                                cache_mod.last_access(os.path.dirname(os.path.dirname(m.path)))))
                for m in mine if m.model != model]
        plan = plan_eviction(uses, quota_bytes=self.config.cache_quota_bytes, incoming_bytes=incoming,
                             protected=protected | {model})
        if not plan.fits:
            raise prefetch_mod.PrefetchError(f"cache quota: {plan.reason}")
        if plan.evict and not pods_known:
            raise prefetch_mod.PrefetchError("cache quota: eviction needed, but the pods on this node cannot be "
                                             "listed, so which models they use is unknown; nothing evicted")
        for m in plan.evict:
            if prefetch_mod.evict_model(self.prefetcher.cache_dir, m):
                with self._pf_lock:
                    self._pf.evicted.append(f"{m} for {model}: {plan.reason}")

    def wait_prefetches(self, timeout: float) -> bool:
        """Block until no prefetch is queued or running (tests, --once); True when idle."""
        deadline = time.monotonic() + timeout
        while self._worker is not None and self._worker.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
