"""A pod sharing a GPU through gpusched (gpusched.io/gpu-memory, no nvidia.com/gpu) on the
test bed: a real Prometheus scrapes the fleet simulator, whose dcgm-exporter names no
pod on that GPU (as the real one, which asks the kubelet's PodResources API for devices)
and whose node agent exports the pod's SM share. The InferenceAutoscaler's
gpuUtilization is known, and it is the agent's figure."""
from __future__ import annotations

import threading

import pytest

from benchmarks.fleet.driver import Load
from benchmarks.fleet.exporter import FleetSimulator, Workload
from benchmarks.fleet.model import ServiceModel
from benchmarks.testbed.prometheus import Prometheus
from scheduler import contract
from tests.autoscaler.bed import GROUP, PLURAL, VERSION, install_crd
from tests.helpers import condition, eventually, gpu_deployment

pytestmark = pytest.mark.integration

MODEL = "org/model"


def test_share_pod_gets_gpu_utilization_from_the_agents_series(cluster, apps, core, namespace):
    from kubernetes import client

    from autoscaler.daemon import Autoscaler, Config

    install_crd(cluster)
    ns = namespace
    # no device asked: dcgm-exporter cannot name it; gpu-ids says GPU 0, as the extender would
    apps.create_namespaced_deployment(ns, gpu_deployment(
        "share", 1, gpus=0, labels={"fleet": "share"},
        annotations={contract.GPU_MEMORY: "20Gi", contract.MODEL: MODEL, contract.READY_DELAY: "0s"}))

    def ready():
        pods = core.list_namespaced_pod(ns, label_selector="fleet=share").items
        return [p.metadata.name for p in pods if condition(p, "Ready") and condition(p, "Ready").status == "True"]
    (pod,) = eventually(lambda: ready() or None, timeout=60, what="the share pod Ready")

    prom = Prometheus(cluster)
    prom.start()
    w = Workload(ns, "fleet=share", MODEL, None, ServiceModel(max_batch=4))
    sim = FleetSimulator(cluster.api_client(), [w], prometheus=prom).start()
    # 20 req/s on a replica that serves about 4.5: a queue always waits, the GPU never idles
    load = Load(sim, w, 20.0)
    decisions: list = []
    stop = threading.Event()
    daemon = None
    try:
        (st,) = sim.pods().values()
        assert st.share
        q = f'gpusched_pod_gpu_utilization{{pod="{pod}"}} == 100 and on(gpu, Hostname) DCGM_FI_DEV_GPU_UTIL'
        eventually(lambda: prom.query(q), timeout=30, interval=0.5,
                   what="the agent's series for the busy pod and DCGM's for its GPU in Prometheus")
        # DCGM has the GPU's series but names no pod on it: the failure the agent's series covers
        assert prom.query(f'DCGM_FI_DEV_GPU_UTIL{{namespace="{ns}"}} or DCGM_FI_DEV_GPU_UTIL{{pod="{pod}"}}') == []

        crd = client.CustomObjectsApi(cluster.api_client())
        crd.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceAutoscaler", "metadata": {"name": "share"},
            "spec": {"scaleTargetRef": {"name": "share"}, "minReplicas": 1, "maxReplicas": 2,
                     "signals": [{"type": "gpuUtilization", "target": 80}]}})
        cfg = Config(prometheus_url=prom.url, interval_s=1.0, namespace=ns, watch_namespace=ns,
                     identity=f"test-{ns}"[:60], metrics_port=0, lease_duration_s=3.0, prometheus_timeout_s=2.0)
        daemon = Autoscaler(cluster.api_client(), cfg,
                            on_decision=lambda key, now, obs, d: decisions.append(dict(obs.signals)))
        threading.Thread(target=daemon.run, args=(stop,), daemon=True).start()

        def known():
            return next((s for s in decisions if s.get("gpuUtilization") is not None), None)
        signals = eventually(known, timeout=30, interval=0.5, what="a decision with gpuUtilization known")
        assert signals["gpuUtilization"] == pytest.approx(100.0)
    finally:
        stop.set()
        load.stop()
        sim.stop()
        prom.stop()
