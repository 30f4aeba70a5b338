"""A test bed of its own for the fault cases: they kill and restart the control plane,
so they never run on a cluster that other tests share.

One LocalCluster (etcd, kube-apiserver, controller-manager, kube-scheduler, kwok) with
N simulated 8 x H100 nodes, the gpusched extender and its kube-scheduler as deploy/
configures them, and on demand Prometheus, the InferenceAutoscaler CRD and the fleet
simulator (simulated vLLM servers) for the autoscaler cases.

Its shares are annotation shares (gpusched.io/gpu-memory), deliberately: the legacy path, as
the chart has it with extender.annotationShares=true (its default refuses them where the DRA
plugin runs, for ResourceClaims). The bed installs none of the chart's admission policies;
the extender's accounting of annotation shares is what these cases put under faults.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable


from benchmarks.testbed.crd import install_crd
from scheduler import contract
from scheduler.kube.client import raw
from scheduler.nodeinfo import encode_time

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "vllm/vllm-openai:v0.9.0"


def wait_for(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - the API server may be restarting
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s (last: {last!r:.300})")


def gpu_pod(name: str, *, gpus: int = 0, memory: str | None = None, scheduler: str = "gpusched",
            labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
            node_selector: dict[str, str] | None = None) -> dict:
    ann = dict(annotations or {})
    if memory:
        ann[contract.GPU_MEMORY] = memory
    spec: dict[str, Any] = {
        "schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "server", "image": IMAGE,
                        "resources": {"limits": {contract.GPU_RESOURCE: str(gpus)}} if gpus else {}}],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "chaos"}, "annotations": ann}, "spec": spec}


def _scheduler_class():
    from benchmarks.testbed.stack import GpuschedScheduler

    class Scheduler(GpuschedScheduler):
        """deploy/'s configuration, with the extender's ``ignorable`` overridden when asked, and
        kube-scheduler calling it through a readiness-gated proxy (a Service) unless ``direct``."""
        ignorable: bool | None = None
        direct: bool = False
        proxy = None

        def scheduler_config(self) -> dict:
            cfg = super().scheduler_config()
            if self.ignorable is not None:
                cfg["extenders"][0]["ignorable"] = self.ignorable
            if self.proxy is not None and not self.direct:
                cfg["extenders"][0]["urlPrefix"] = self.proxy.url
            return cfg

        def deployed_ignorable(self) -> bool:
            return bool(super().scheduler_config()["extenders"][0].get("ignorable", False))
    return Scheduler


def _Scheduler(cluster, **kw):
    return _scheduler_class()(cluster, **kw)


class ChaosBed:
    def __init__(self, state_dir: Path | str, nodes: int):
        from benchmarks.testbed.cluster import LocalCluster
        self.cluster = LocalCluster(state_dir)
        self.nodes = nodes
        self.gpusched = None
        self.prom = None
        self._api = None
        self._crd = False
        self._ns_seq = 0

    # ------------------------------------------------------------ lifecycle

    def up(self) -> "ChaosBed":
        from benchmarks.testbed.cli import wait_nodes_ready
        from benchmarks.testbed.nodes import create_nodes
        from benchmarks.testbed.profiles import small
        from kubernetes import client

        self.cluster.up()
        try:
            core = client.CoreV1Api(self.cluster.api_client())
            create_nodes(core, small(self.nodes))
            wait_nodes_ready(core, self.nodes, timeout=120)
            from benchmarks.chaos.proxy import ReadyProxy
            # plain HTTP: the readiness-gated proxy forwards bytes and probes /readyz on the verbs' URL
            self.gpusched = _Scheduler(self.cluster, tls=False)
            self.gpusched.proxy = ReadyProxy(self.gpusched.port, f"{self.gpusched.url}/readyz").start()
            self.gpusched.start()
        except BaseException:
            self.cluster.down()
            raise
        return self

    def down(self) -> None:
        if self.gpusched is not None and self.gpusched.proxy is not None:
            self.gpusched.proxy.stop()
        self.cluster.down()

    def configure(self, ignorable: bool | None = None, direct: bool = False) -> None:
        """Restart gpusched's kube-scheduler with the extender ignorable or not (None: as deploy/ has it),
        calling it directly or through the readiness-gated proxy."""
        if (self.gpusched.ignorable, self.gpusched.direct) == (ignorable, direct):
            return
        self.gpusched.ignorable, self.gpusched.direct = ignorable, direct
        name = f"{self.gpusched.name}-scheduler"
        self.cluster.stop_process(name)
        self.cluster.start_scheduler(name, self.gpusched.scheduler_config())
        self.cluster.wait_scheduler_ready(name)

    @property
    def api(self):
        if self._api is None:
            from scheduler.kube.client import api_client
            self._api = api_client(str(self.cluster.kubeconfig))
        return self._api

    # ------------------------------------------------------------ pieces on demand

    def prometheus(self):
        from benchmarks.testbed.prometheus import Prometheus
        if self.prom is None:
            self.prom = Prometheus(self.cluster)
            self.prom.start()
        return self.prom

    def install_crd(self) -> None:
        if not self._crd:
            install_crd(self.api)
            self._crd = True

    # ------------------------------------------------------------ namespaces and objects

    def namespace(self, prefix: str) -> str:
        self._ns_seq += 1
        name = f"chaos-{prefix}-{self._ns_seq}-{int(time.time()) % 100000}"
        raw(self.api, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        wait_for(lambda: raw(self.api, "GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200, 60,
                 f"default ServiceAccount in {name}")
        return name

    def delete_namespace(self, ns: str, timeout: float = 300) -> None:
        """Delete and wait until its pods are gone: GPU capacity is shared by the cases."""
        try:
            raw(self.api, "DELETE", f"/api/v1/namespaces/{ns}")
        except Exception as exc:  # noqa: BLE001
            log.warning("deleting %s: %s", ns, exc)
        wait_for(lambda: not self.pods(ns), timeout, f"pods of {ns} deleted", interval=1.0)

    def pods(self, ns: str | None = None, selector: str | None = None) -> list[dict]:
        path = f"/api/v1/namespaces/{ns}/pods" if ns else "/api/v1/pods"
        _, body = raw(self.api, "GET", path, query={"labelSelector": selector} if selector else None, timeout=60)
        return (body or {}).get("items") or []

    def list_nodes(self) -> list[dict]:
        return raw(self.api, "GET", "/api/v1/nodes", timeout=60)[1]["items"]

    def create_pods(self, ns: str, bodies: list[dict], workers: int = 8,
                    on_created: Callable[[int], None] | None = None) -> int:
        """Create pods from a few threads (retrying while the API server is away); returns how
        many were created. ``on_created(n)`` is called with the running count."""
        done = 0
        lock = threading.Lock()

        def one(body: dict) -> None:
            nonlocal done
            deadline = time.monotonic() + 120
            while True:
                try:
                    raw(self.api, "POST", f"/api/v1/namespaces/{ns}/pods", body)
                    break
                except Exception as exc:  # noqa: BLE001
                    if getattr(exc, "status", None) == 409:
                        break
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            with lock:
                done += 1
                n = done
            if on_created:
                on_created(n)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, bodies))
        return done

    def set_reported_at(self, node: str, when: datetime, models: dict[str, tuple[int, str]] | None = None) -> None:
        """Play the node agent: publish the report's time (and optionally the model cache)."""
        import json
        ann: dict[str, Any] = {contract.REPORTED_AT: encode_time(when)}
        if models is not None:
            ann[contract.MODEL_CACHE] = json.dumps({m: {"bytes": b, "tier": t} for m, (b, t) in models.items()},
                                                   separators=(",", ":"))
        raw(self.api, "PATCH", f"/api/v1/nodes/{node}", {"metadata": {"annotations": ann}},
            content_type="application/merge-patch+json")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
