"""The fleet simulator on the test bed: plays vLLM servers, DCGM exporters and gpusched
node agents for a real Prometheus, driven by the pure queueing model in
benchmarks.fleet.model.

One HTTP server on 127.0.0.1 (a free port) serves
- ``/metrics/<namespace>/<pod>``: one simulated vLLM server per pod, with vLLM's names
  (``vllm:num_requests_waiting``, ``vllm:num_requests_running``,
  ``vllm:kv_cache_usage_perc``, ``vllm:time_to_first_token_seconds``,
  ``vllm:request_queue_time_seconds``, ``vllm:request_success_total``,
  ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``) and only vLLM's
  labels ``model_name`` and ``engine``: pod and namespace come from the scrape target,
  as with Kubernetes service discovery;
- ``/metrics/dcgm/<node>``: a DCGM exporter in Kubernetes mode for each node that runs
  a simulated pod: ``DCGM_FI_DEV_GPU_UTIL`` (percent), ``DCGM_FI_DEV_FB_USED`` and
  ``DCGM_FI_DEV_FB_FREE`` (MiB) per GPU, labels ``gpu``, ``UUID``, ``device``,
  ``modelName``, ``Hostname``, and ``container``/``namespace``/``pod`` only on GPUs a
  container holds as ``nvidia.com/gpu`` devices. dcgm-exporter's pod mapper asks the
  kubelet's PodResources API which devices each container was given; a pod that shares
  a GPU through gpusched (``gpusched.io/gpu-memory`` alone) asks for no device, so its
  GPU's series carry no pod label (gpusched's ``gpu-ids`` annotation is not read, as
  dcgm-exporter does not read it). A GPU's utilisation and memory are its pods' summed;
- ``/metrics/agent/<node>``: the gpusched node agent's per-pod series
  (``gpusched_pod_gpu_utilization``, ``gpusched_pod_gpu_memory_used_bytes``, rendered by
  the agent's own code) for every pod with work on a GPU, share pods included;
- ``/metrics/router/<namespace>/<model>``: the model's router queue (requests that
  arrived while no replica was Ready) as ``vllm:num_requests_waiting{model_name}``.

``FleetSimulator`` watches the pods of each ``Workload`` (namespace + label selector)
through the API server. A pod whose phase is Running is a replica and a scrape target
(warm pods included: their server is up, idle); it gets traffic only while its Ready
condition is True, so warm replicas held out by the ``gpusched.io/serving`` readiness
gate get none. The model runs in a background thread on the wall clock times
``speed``; every time and rate it reports (histograms, counters) is in simulated
seconds. Prometheus's file_sd targets follow the pods:

    pod:    {"targets": ["127.0.0.1:PORT"], "labels": {"namespace": NS, "pod": POD,
             "instance": "POD_IP:8000", "__metrics_path__": "/metrics/NS/POD"}}
    router: {"labels": {"namespace": NS, "model": MODEL, "instance": "router/NS/MODEL",
             "__metrics_path__": "/metrics/router/NS/MODEL"}}   (no pod label)
    dcgm:   {"labels": {"instance": "NODE:9400", "__metrics_path__": "/metrics/dcgm/NODE"}}
    agent:  {"labels": {"instance": "NODE:9401", "__metrics_path__": "/metrics/agent/NODE"}}

The router target carries the namespace too (not only the model), so that a query
scoped to the workload's namespace sees demand at zero replicas; it has no pod label,
so a query scoped to serving pods leaves it out.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Protocol, Sequence
from urllib.parse import unquote, urlsplit

from kubernetes.client import ApiClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from benchmarks.fleet.model import Fleet, Histogram, LoadSource, ReplicaMetrics, ServiceModel
from scheduler import contract
from scheduler.agent.metrics import pod_gpu_families
from scheduler.agent.pod_gpu import PodGpuUsage
from scheduler.kube.client import raw
from scheduler.kube.watch import Informer
from scheduler.nodeinfo import MiB, decode_gpus
from scheduler.quantity import QuantityError, parse_bytes

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ENGINE = "0"  # vLLM V1 labels each engine core by index
VLLM_PORT = 8000
DCGM_PORT = 9400
AGENT_PORT = 9401
DEFAULT_GPU_MIB = 81559  # usable memory of an H100 80GB HBM3, as the test bed's nodes report it
DEFAULT_PRODUCT = "NVIDIA H100 80GB HBM3"


# ---------------------------------------------------------------- exposition

class _Families:
    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render(families: list[Metric]) -> bytes:
    """Prometheus text format (0.0.4) of the given metric families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def _hist(name: str, doc: str, labels: list[str], values: list[str], h: Histogram) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=labels)
    buckets = [(_le(b), c) for b, c in zip(h.bounds, h.counts)] + [("+Inf", h.count)]
    fam.add_metric(values, buckets=buckets, sum_value=h.sum)
    return fam


def _le(b: float) -> str:
    return repr(float(b))


def vllm_families(m: ReplicaMetrics, model_name: str, engine: str = ENGINE) -> list[Metric]:
    """One vLLM server's metrics, named and labelled as vLLM (V1) exports them."""
    labels, values = ["model_name", "engine"], [model_name, engine]
    out: list[Metric] = []
    for name, doc, v in (
            ("vllm:num_requests_running", "Number of requests in model execution batches.", m.running),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", m.waiting),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", m.kv_cache_usage)):
        g = GaugeMetricFamily(name, doc, labels=labels)
        g.add_metric(values, v)
        out.append(g)
    out.append(_hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                     labels, values, m.ttft))
    out.append(_hist("vllm:request_queue_time_seconds",
                     "Histogram of time spent in WAITING phase for request.", labels, values, m.queue_time))
    c = CounterMetricFamily("vllm:request_success", "Count of successfully processed requests.",
                            labels=labels + ["finished_reason"])
    c.add_metric(values + ["length"], m.success_total)  # the model stops at the output length
    out.append(c)
    for name, doc, v in (("vllm:prompt_tokens", "Number of prefill tokens processed.", m.prompt_tokens_total),
                         ("vllm:generation_tokens", "Number of generation tokens processed.",
                          m.generation_tokens_total)):
        c = CounterMetricFamily(name, doc, labels=labels)
        c.add_metric(values, v)
        out.append(c)
    return out


def router_families(model_name: str, waiting: int) -> list[Metric]:
    """The model-level router queue: waiting requests that no replica holds yet."""
    g = GaugeMetricFamily("vllm:num_requests_waiting",
                          "Requests waiting at the model's router for a Ready replica (simulator).",
                          labels=["model_name"])
    g.add_metric([model_name], waiting)
    return [g]


@dataclass(frozen=True)
class GpuSample:
    index: int
    uuid: str
    product: str  # DCGM's modelName, e.g. "NVIDIA H100 80GB HBM3"
    hostname: str
    util: float  # percent
    fb_used_mib: int
    fb_free_mib: int
    namespace: str = ""
    pod: str = ""
    container: str = ""


def dcgm_families(gpus: Sequence[GpuSample]) -> list[Metric]:
    """DCGM exporter's metrics for one node's GPUs (Kubernetes mode: pod labels on the
    GPUs a pod holds)."""
    fams = [GaugeMetricFamily("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
            GaugeMetricFamily("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
            GaugeMetricFamily("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).")]
    for g in gpus:
        labels = {"gpu": str(g.index), "UUID": g.uuid, "device": f"nvidia{g.index}", "modelName": g.product,
                  "Hostname": g.hostname}
        if g.pod:  # series of held and free GPUs differ in their label names, as DCGM's do
            labels.update(container=g.container, namespace=g.namespace, pod=g.pod)
        for fam, v in zip(fams, (round(g.util), g.fb_used_mib, g.fb_free_mib)):
            fam.add_sample(fam.name, labels, v)
    return fams


# ---------------------------------------------------------------- pods

@dataclass(frozen=True)
class Workload:
    """The pods of one inference Deployment and the load it receives."""

    namespace: str
    selector: str  # label selector of its pods, e.g. "app=llm"
    model: str  # model_name label, e.g. "meta-llama/Llama-3.1-8B-Instruct"
    load: LoadSource | None = None
    service: ServiceModel = field(default_factory=ServiceModel)
    engine: str = ENGINE

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.model}"


@dataclass(frozen=True)
class PodState:
    namespace: str
    name: str
    node: str
    ip: str
    running: bool  # the server is up: a replica and a scrape target
    ready: bool  # gets traffic: Ready condition True and not terminating
    gpus: int  # whole GPUs it asks for (nvidia.com/gpu: devices the kubelet gives it)
    gpu_ids: tuple[int, ...] | None  # as the extender assigned them
    container: str  # the one holding the GPU devices, else the first
    gpu_memory_mib: int | None = None  # gpusched.io/gpu-memory

    @property
    def share(self) -> bool:
        """Shares a GPU through gpusched: GPU memory asked, no device."""
        return self.gpus == 0 and self.gpu_memory_mib is not None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_state(obj: dict[str, Any]) -> PodState:
    """What the simulator needs from a raw pod object."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    deleting = bool(meta.get("deletionTimestamp"))
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    running = status.get("phase") == "Running" and bool(spec.get("nodeName"))
    gpus = 0
    containers = spec.get("containers") or []
    holder = ""
    for c in containers:
        res = c.get("resources") or {}
        v = (res.get("limits") or {}).get(contract.GPU_RESOURCE) or (res.get("requests") or {}).get(
            contract.GPU_RESOURCE)
        try:
            n = int(v or 0)
        except (TypeError, ValueError):
            n = 0
        if n > 0:
            gpus += n
            holder = holder or c.get("name", "")
    ann = meta.get("annotations") or {}
    share_mib = None
    if ann.get(contract.GPU_MEMORY):
        try:
            share_mib = parse_bytes(ann[contract.GPU_MEMORY]) // MiB
        except (QuantityError, ValueError, TypeError):
            share_mib = None
    ids = None
    text = ann.get(contract.GPU_IDS)
    if text:
        try:
            parsed = tuple(int(x) for x in text.split(","))
            if parsed and len(set(parsed)) == len(parsed) and all(0 <= i < 64 for i in parsed):
                ids = parsed
        except ValueError:
            pass
    return PodState(
        namespace=meta.get("namespace", ""), name=meta.get("name", ""), node=spec.get("nodeName") or "",
        ip=status.get("podIP") or "", running=running, ready=running and not deleting and conds.get("Ready") == "True",
        gpus=gpus, gpu_ids=ids, container=holder or (containers[0].get("name", "") if containers else ""),
        gpu_memory_mib=share_mib)


@dataclass(frozen=True)
class NodeGpus:
    product: str
    gpus: tuple[tuple[int, str, int], ...]  # (index, uuid, memory MiB)


def node_gpus(obj: dict[str, Any] | None, name: str) -> NodeGpus:
    """A node's GPUs from the node report annotation, else its GPU feature labels."""
    meta = (obj or {}).get("metadata") or {}
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    product = (labels.get(contract.GPU_PRODUCT_LABEL) or "").replace("-", " ") or DEFAULT_PRODUCT
    try:
        reported = decode_gpus(ann[contract.GPUS])
        if reported:
            return NodeGpus(product, tuple((g.index, g.uuid or _uuid(name, g.index), g.memory_total // MiB)
                                           for g in reported))
    except (KeyError, ValueError):
        pass
    try:
        count = int(labels.get(contract.GPU_COUNT_LABEL) or 0)
        mem = int(labels.get(contract.GPU_MEMORY_LABEL) or DEFAULT_GPU_MIB)
    except ValueError:
        count, mem = 0, DEFAULT_GPU_MIB
    return NodeGpus(product, tuple((i, _uuid(name, i), mem) for i in range(count)))


def _uuid(node: str, index: int) -> str:
    return f"GPU-{node}-{index}"


# ---------------------------------------------------------------- simulator

class Targets(Protocol):
    def set_targets(self, groups: Iterable[tuple[list[str], dict[str, str]]]) -> None: ...


class FleetSimulator:
    """Simulated vLLM replicas for the pods of real Deployments, exported for Prometheus.

    >>> sim = FleetSimulator(api, [Workload("ns", "app=llm", "m", load=burst(1, 30, 5, 10))],
    ...                      prometheus=prom).start()
    >>> ...; sim.stop()
    """

    def __init__(self, api: ApiClient, workloads: Sequence[Workload], *, prometheus: Targets | None = None,
                 speed: float = 1.0, tick: float = 0.1, util_window: float = 1.0, start_time: float = 0.0,
                 gpu_memory_utilization: float = 0.9, host: str = "127.0.0.1", port: int = 0):
        if not workloads:
            raise ValueError("no workloads to simulate")
        keys = [w.key for w in workloads]
        if len(set(keys)) != len(keys):
            raise ValueError(f"two workloads serve the same model in the same namespace: {keys}")
        if not (speed > 0 and tick > 0 and 0 < gpu_memory_utilization <= 1):
            raise ValueError("speed and tick must be > 0, gpu_memory_utilization in (0, 1]")
        self.api, self.workloads, self.prometheus = api, list(workloads), prometheus
        self.speed, self.tick = speed, tick
        self.gpu_memory_utilization = gpu_memory_utilization
        self.fleet = Fleet(start=start_time, util_window=util_window, keep_finished=False)
        for w in self.workloads:
            self.fleet.add_model(w.key, w.load, w.service)
        self.lock = threading.RLock()
        self._start_time = start_time
        self._t0: float | None = None
        self._pods: dict[str, tuple[Workload, PodState]] = {}  # "ns/pod" -> (workload, state) of replicas
        self._gpu_ids: dict[str, tuple[int, ...]] = {}  # pod key -> GPU indices on its node
        self._nodes: dict[str, NodeGpus] = {}
        self._published: list | None = None
        self._stop = threading.Event()
        self._informers: list[Informer] = []
        self._thread: threading.Thread | None = None
        self._server = _Server((host, port), self)
        self._server_thread: threading.Thread | None = None

    # ---- lifecycle

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def address(self) -> str:
        return f"{self._server.server_address[0]}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def sim_now(self) -> float:
        if self._t0 is None:
            return self._start_time
        return self._start_time + (time.monotonic() - self._t0) * self.speed

    def start(self, sync_timeout: float = 30.0) -> "FleetSimulator":
        self._server_thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                               name="fleet http", daemon=True)
        self._server_thread.start()
        self._t0 = time.monotonic()
        for w in self.workloads:
            inf = Informer(self.api, f"/api/v1/namespaces/{w.namespace}/pods",
                            lambda typ, obj, w=w: self._on_pod(w, typ, obj),
                            params={"labelSelector": w.selector},
                            on_relist=lambda items, w=w: self._on_relist(w, items), name=f"fleet pods {w.key}")
            self._informers.append(inf.start())
        deadline = time.monotonic() + sync_timeout
        for inf in self._informers:
            if not inf.synced.wait(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise TimeoutError(f"{inf.name}: pods not listed within {sync_timeout:.0f}s "
                                   f"({inf.errors} errors; is the API server up?)")
        self._publish()
        self._thread = threading.Thread(target=self._loop, name="fleet clock", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the clock, the watches and the HTTP server; every thread has ended when
        this returns. Prometheus's targets are left as they were."""
        self._stop.set()
        for inf in self._informers:
            inf.stop()
        if self._thread is not None:
            self._thread.join(10)
        if self._server_thread is not None:
            self._server.shutdown()
            self._server_thread.join(10)
            self._server_thread = None
        self._server.server_close()  # joins the handler threads

    def __enter__(self) -> "FleetSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def threads_alive(self) -> list[str]:
        """Names of this simulator's threads still running (none after stop())."""
        out = [i.name for i in self._informers if i.alive]
        for t in (self._thread, self._server_thread):
            if t is not None and t.is_alive():
                out.append(t.name)
        return out

    # ---- clock

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                with self.lock:
                    self.fleet.advance(max(self.fleet.now, self.sim_now()))
                self._publish()
            except Exception:  # keep serving; a bug shows in the log, not as a dead thread
                log.exception("fleet simulator tick failed")

    # ---- pods

    def _node(self, name: str) -> NodeGpus:
        info = self._nodes.get(name)
        if info is None:
            try:
                _, obj = raw(self.api, "GET", f"/api/v1/nodes/{name}", timeout=5)
            except Exception as exc:
                log.warning("node %s: %s; assuming its GPU labels are absent", name, exc)
                obj = None
            info = self._nodes[name] = node_gpus(obj, name)
        return info

    def _on_pod(self, w: Workload, typ: str, obj: dict[str, Any]) -> None:
        st = pod_state(obj)
        if st.running and st.node:
            self._node(st.node)  # outside the lock: an API call
        with self.lock:
            self._apply(w, st, deleted=typ == "DELETED")

    def _on_relist(self, w: Workload, items: list[dict[str, Any]]) -> None:
        states = [pod_state(o) for o in items]
        for st in states:
            if st.running and st.node:
                self._node(st.node)
        with self.lock:
            present = {st.key for st in states}
            for key, (pw, _) in list(self._pods.items()):
                if pw is w and key not in present:
                    ns, name = key.split("/", 1)
                    self._apply(w, PodState(ns, name, "", "", False, False, 0, None, ""), deleted=True)
            for st in states:
                self._apply(w, st, deleted=False)

    def _apply(self, w: Workload, st: PodState, deleted: bool) -> None:
        now = max(self.fleet.now, self.sim_now())
        if deleted or not st.running:
            if self.fleet.has_replica(st.key):
                self.fleet.remove_replica(st.key, now)
            self._pods.pop(st.key, None)
            self._gpu_ids.pop(st.key, None)
            return
        self.fleet.set_replica(st.key, w.key, st.ready, now)
        self._pods[st.key] = (w, st)
        if st.key not in self._gpu_ids:
            self._gpu_ids[st.key] = self._assign_gpus(st)

    def _assign_gpus(self, st: PodState) -> tuple[int, ...]:
        """Where the pod's processes run: the extender's choice, else the device plugin's
        (free GPUs in order); a share pod without one goes on the first GPU no whole-GPU
        pod holds."""
        if st.gpu_ids is not None:
            return st.gpu_ids if not st.share else st.gpu_ids[:1]
        here = [(self._pods[k][1], ids) for k, ids in self._gpu_ids.items()
                if k in self._pods and self._pods[k][1].node == st.node]
        taken = {i for other, ids in here for i in ids if not (st.share and other.share)}
        node = self._nodes.get(st.node)
        indices = [g[0] for g in node.gpus] if node and node.gpus else list(range(64))
        return tuple([i for i in indices if i not in taken][:1 if st.share else st.gpus])

    # ---- reading (tests, benches)

    def pods(self) -> dict[str, PodState]:
        with self.lock:
            return {k: st for k, (_, st) in self._pods.items()}

    def metrics(self, namespace: str, pod: str) -> ReplicaMetrics | None:
        with self.lock:
            key = f"{namespace}/{pod}"
            return self.fleet.metrics(key) if self.fleet.has_replica(key) else None

    def router_waiting(self, workload: Workload) -> int:
        with self.lock:
            return self.fleet.router_waiting(workload.key)

    # ---- targets

    def target_groups(self) -> list[tuple[list[str], dict[str, str]]]:
        addr = [self.address]
        groups: list[tuple[list[str], dict[str, str]]] = []
        with self.lock:
            nodes = set()
            for key, (_, st) in sorted(self._pods.items()):
                groups.append((addr, {"namespace": st.namespace, "pod": st.name,
                                      "instance": f"{st.ip}:{VLLM_PORT}" if st.ip else key,
                                      "__metrics_path__": f"/metrics/{st.namespace}/{st.name}"}))
                nodes.add(st.node)
            for w in self.workloads:
                groups.append((addr, {"namespace": w.namespace, "model": w.model,
                                      "instance": f"router/{w.namespace}/{w.model}",
                                      "__metrics_path__": f"/metrics/router/{w.namespace}/{w.model}"}))
            for node in sorted(nodes):
                groups.append((addr, {"instance": f"{node}:{DCGM_PORT}", "__metrics_path__": f"/metrics/dcgm/{node}"}))
                groups.append((addr, {"instance": f"{node}:{AGENT_PORT}",
                                      "__metrics_path__": f"/metrics/agent/{node}"}))
        return groups

    def _publish(self) -> None:
        if self.prometheus is None:
            return
        groups = self.target_groups()
        if groups != self._published:
            self.prometheus.set_targets(groups)
            self._published = groups

    # ---- pages

    def page(self, path: str) -> bytes | None:
        """The exposition text for a /metrics/... path, or None for an unknown one."""
        parts = [unquote(p) for p in urlsplit(path).path.split("/") if p]
        if len(parts) < 2 or parts[0] != "metrics":
            return None
        parts = parts[1:]
        with self.lock:
            self.fleet.advance(max(self.fleet.now, self.sim_now()))
            if len(parts) == 2 and f"{parts[0]}/{parts[1]}" in self._pods:
                w, st = self._pods[f"{parts[0]}/{parts[1]}"]
                fams = vllm_families(self.fleet.metrics(st.key), w.model, w.engine)
            elif len(parts) == 2 and parts[0] in ("dcgm", "agent"):
                fams = self._dcgm(parts[1]) if parts[0] == "dcgm" else self._agent(parts[1])
                if fams is None:
                    return None
            elif len(parts) >= 3 and parts[0] == "router":
                ns, model = parts[1], "/".join(parts[2:])
                key = f"{ns}/{model}"
                if key not in self.fleet.models:
                    return None
                fams = router_families(model, self.fleet.router_waiting(key))
            else:
                return None
        return render(fams)

    def _held(self, node: str) -> dict[int, list[PodState]]:
        held: dict[int, list[PodState]] = {}
        for key, (_, st) in sorted(self._pods.items()):
            if st.node == node:
                for i in self._gpu_ids.get(key, ()):
                    held.setdefault(i, []).append(st)
        return held

    def _node_gpu_list(self, node: str, held: dict[int, list[PodState]]) -> tuple[str, list[tuple[int, str, int]]]:
        info = self._nodes.get(node)
        gpus = list(info.gpus) if info else []
        known = {g[0] for g in gpus}
        gpus += [(i, _uuid(node, i), DEFAULT_GPU_MIB) for i in sorted(held) if i not in known]
        return (info.product if info else DEFAULT_PRODUCT), gpus

    def _pod_mib(self, st: PodState, mem: int, sharing: int) -> int:
        """What the pod's server holds on one GPU: vLLM takes its share at start."""
        if st.share:
            return min(mem, st.gpu_memory_mib or mem // max(1, sharing))
        return int(math.floor(mem * self.gpu_memory_utilization))

    def _dcgm(self, node: str) -> list[Metric] | None:
        held = self._held(node)
        if node not in self._nodes and not held:
            return None
        product, gpus = self._node_gpu_list(node, held)
        samples = []
        for index, uuid, mem in gpus:
            pods = held.get(index, [])
            util = min(100.0, sum(self.fleet.metrics(st.key).gpu_util for st in pods))
            used = min(mem, sum(self._pod_mib(st, mem, len(pods)) for st in pods))
            # the PodResources API lists only containers given nvidia.com/gpu devices
            device_holder = next((st for st in pods if st.gpus > 0), None)
            if device_holder is None:
                samples.append(GpuSample(index, uuid, product, node, util, used, mem - used))
            else:
                samples.append(GpuSample(index, uuid, product, node, util, used, mem - used,
                                         device_holder.namespace, device_holder.name, device_holder.container))
        return dcgm_families(samples)

    def _agent(self, node: str) -> list[Metric] | None:
        """The node agent's per-pod series: every pod with a process on a GPU."""
        held = self._held(node)
        if node not in self._nodes and not held:
            return None
        _, gpus = self._node_gpu_list(node, held)
        usages = [PodGpuUsage(st.namespace, st.name, index, uuid, self._pod_mib(st, mem, len(held.get(index, []))) * MiB,
                              self.fleet.metrics(st.key).gpu_util)
                  for index, uuid, mem in gpus for st in held.get(index, [])]
        return pod_gpu_families(usages, node)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802
        try:
            body = self.server.sim.page(self.path)
        except Exception as exc:
            log.exception("fleet page %s", self.path)
            self._send(500, f"error: {exc}\n".encode(), "text/plain; charset=utf-8")
            return
        if body is None:
            self._send(404, b"no such target\n", "text/plain; charset=utf-8")
        else:
            self._send(200, body, CONTENT_TYPE)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("fleet http: " + fmt, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: FleetSimulator):
        self.sim = sim
        super().__init__(address, _Handler)
